// leaker.js: a node program whose memory behaviour is known, for the JIT-frame test of
// `leaktrace sites` (run with `node --perf-basic-prof`, which writes /tmp/perf-PID.map).
//
//   node --perf-basic-prof leaker.js SECONDS [KIB_PER_SEC]
//
// Every 100 ms `rememberRequest` keeps a new object holding a typed array of KIB_PER_SEC/10 KiB
// (default 2048 KiB/s), filled in JavaScript, in a list that is never pruned; `handleRequest`
// builds and drops short strings and arrays every 10 ms. Prints {"pid":N,"ready":true} once its steady state begins, then runs
// SECONDS and exits 0.
'use strict';

const secs = Number(process.argv[2] || 10);
const kib = Number(process.argv[3] || 2048);
const words = Math.max(1, Math.floor((kib * 1024) / 10 / 8));
const remembered = [];

function rememberRequest(id) {
  const payload = new Float64Array(words);
  for (let i = 0; i < words; i++) payload[i] = id + i * 0.5;
  remembered.push({ id, payload });
}

function handleRequest(id) {
  const parts = [];
  for (let i = 0; i < 16; i++) parts.push(`request-${id}-${i}`);
  return parts.join(',').length;
}

let id = 0;
let tick = 0;
for (let i = 0; i < 64; i++) handleRequest(i);
process.stdout.write(JSON.stringify({ pid: process.pid, ready: true }) + '\n');
const end = Date.now() + secs * 1000;
const timer = setInterval(() => {
  for (let i = 0; i < 8; i++) handleRequest(id++);
  if (++tick % 10 === 0) rememberRequest(id++);
  if (Date.now() >= end) clearInterval(timer);
}, 10);
