-- 009_waiting_room: a sale may put its buyers in a waiting room (docs/waiting-room.md). NULL: none, buyers
-- race for the units as before; 'fifo': places are admitted in the order buyers joined; 'raffle': places
-- taken before the start are admitted in a random order drawn from the sale's own seed (queue_seed), so
-- arriving first gains nothing, and places taken after the start queue behind them in arrival order.
ALTER TABLE flash_sales
  ADD COLUMN queue text CHECK (queue IN ('fifo', 'raffle')),
  ADD COLUMN queue_seed text;
