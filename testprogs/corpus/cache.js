// Node 20 workload for the leaktrace corpus: a Map used as a bounded cache (oldest entry evicted,
// Map keeps insertion order) under random requests: it warms up, then holds at ENTRIES.
//
//   node cache.js ENTRIES VALUE_BYTES SEED
//
// Deterministic given SEED (a small LCG picks the keys and sizes).
const [entries, valueBytes, seed] = process.argv.slice(2).map(Number);
if (!entries || !valueBytes) {
  console.error('usage: node cache.js ENTRIES VALUE_BYTES SEED');
  process.exit(2);
}
let s = (seed || 1) >>> 0;
const rnd = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
console.log(`pid ${process.pid}: node Map cache of ${entries} entries of ~${valueBytes} B, warms then holds`);
const cache = new Map();
const perTick = Math.max(1, Math.floor(entries / 300));
setInterval(() => {
  for (let k = 0; k < perTick; k++) {
    const key = 'k' + Math.floor(rnd() * entries * 4);
    if (cache.has(key)) continue;
    // A string of valueBytes characters (a distinct one: the leading key prevents sharing).
    cache.set(key, key + 'x'.repeat(valueBytes + Math.floor(rnd() * valueBytes / 4)));
    if (cache.size > entries) cache.delete(cache.keys().next().value);
  }
}, 100);
