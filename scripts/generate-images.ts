// `npx tsx scripts/generate-images.ts`: draws one small SVG card per demo product into public/images/.
// The output is committed; rerun after changing src/demo/demo-catalogue.ts.
import { mkdir, writeFile } from 'node:fs/promises'
import { DEMO_PRODUCTS, type DemoCategory } from '../src/demo/demo-catalogue.js'

const OUT_DIR = new URL('../public/images/', import.meta.url)

const THEMES: Record<DemoCategory, { from: string; to: string; icon: string }> = {
  sneakers: {
    from: '#ff7a59',
    to: '#d9366b',
    icon: '<path d="M-62 26v-46q0-8 8-8h14q6 14 24 12l12-14q10 8 18 22l34 12q16 6 16 22z"/><rect x="-62" y="30" width="126" height="10" rx="5" opacity=".6"/>',
  },
  headphones: {
    from: '#5b6cff',
    to: '#3a2d91',
    icon: '<path d="M-44 10v-8a44 44 0 0 1 88 0v8" fill="none" stroke="#fff" stroke-width="9"/><rect x="-56" y="4" width="24" height="38" rx="8"/><rect x="32" y="4" width="24" height="38" rx="8"/>',
  },
  keyboards: {
    from: '#2fb6a3',
    to: '#1d6f8c',
    icon: '<rect x="-66" y="-30" width="132" height="64" rx="10"/><g fill="#1d6f8c" opacity=".55"><rect x="-56" y="-20" width="16" height="14" rx="3"/><rect x="-34" y="-20" width="16" height="14" rx="3"/><rect x="-12" y="-20" width="16" height="14" rx="3"/><rect x="10" y="-20" width="16" height="14" rx="3"/><rect x="32" y="-20" width="24" height="14" rx="3"/><rect x="-56" y="0" width="24" height="14" rx="3"/><rect x="-26" y="0" width="16" height="14" rx="3"/><rect x="-4" y="0" width="16" height="14" rx="3"/><rect x="18" y="0" width="38" height="14" rx="3"/></g>',
  },
  coffee: {
    from: '#c08552',
    to: '#5e3023',
    icon: '<path d="M-44-22h72v34a30 30 0 0 1-30 30h-12a30 30 0 0 1-30-30z"/><path d="M28-12h8a14 14 0 0 1 0 28h-8" fill="none" stroke="#fff" stroke-width="7"/><rect x="-56" y="46" width="100" height="7" rx="3" opacity=".6"/>',
  },
  backpacks: {
    from: '#7bb661',
    to: '#2e6b3a',
    icon: '<path d="M-14-46h28a8 8 0 0 1 8 8v6h-44v-6a8 8 0 0 1 8-8z" fill="none" stroke="#fff" stroke-width="6"/><rect x="-42" y="-34" width="84" height="92" rx="22"/><rect x="-28" y="12" width="56" height="30" rx="8" fill="#2e6b3a" opacity=".45"/>',
  },
  watches: {
    from: '#8a8fa3',
    to: '#2f3342',
    icon: '<rect x="-18" y="-62" width="36" height="124" rx="10" opacity=".6"/><circle r="40"/><circle r="32" fill="#2f3342"/><path d="M0 0v-22M0 0l14 10" stroke="#fff" stroke-width="5" stroke-linecap="round"/>',
  },
}

function escapeXml(text: string): string {
  return text.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)
}

function card(name: string, category: DemoCategory): string {
  const theme = THEMES[category]
  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 400 300" role="img" aria-label="${escapeXml(name)}">
<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${theme.from}"/><stop offset="1" stop-color="${theme.to}"/></linearGradient></defs>
<rect width="400" height="300" rx="24" fill="url(#g)"/>
<g transform="translate(200 130) scale(1.25)" fill="#fff">${theme.icon}</g>
<text x="200" y="256" text-anchor="middle" font-family="system-ui,sans-serif" font-size="24" font-weight="600" fill="#fff">${escapeXml(name)}</text>
<text x="24" y="40" font-family="system-ui,sans-serif" font-size="14" letter-spacing="2" fill="#fff" opacity=".75">${category.toUpperCase()}</text>
</svg>
`
}

await mkdir(OUT_DIR, { recursive: true })
for (const product of DEMO_PRODUCTS) {
  await writeFile(new URL(`${product.sku}.svg`, OUT_DIR), card(product.name, product.category))
}
console.log(`generate-images: wrote ${DEMO_PRODUCTS.length} SVGs to public/images/`)
