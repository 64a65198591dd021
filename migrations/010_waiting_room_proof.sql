-- 010_waiting_room_proof: a sale's waiting room may ask for a proof of work before it gives a place
-- (docs/waiting-room.md): the most numbers a client may have to try (ALTCHA's maxnumber; on average it
-- tries half). 0: no proof. A place costs a person's browser a moment and a bot farm that much per account.
ALTER TABLE flash_sales
  ADD COLUMN queue_difficulty integer NOT NULL DEFAULT 0 CHECK (queue_difficulty BETWEEN 0 AND 10000000);
