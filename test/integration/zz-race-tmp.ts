import { writeFileSync, existsSync } from 'node:fs';
import { scratch, startDaemon, staticPolicy, request } from './harness.js';
import { setTimeout as sleep } from 'node:timers/promises';
const tmp = scratch('race');
const p = { policy: tmp.path('p.yaml'), socket: tmp.path('a.sock'), cache: tmp.path('c.sqlite') };
writeFileSync(p.policy, staticPolicy());
let bad = 0;
for (let i = 0; i < 8; i++) {
  const d = startDaemon(p, { NOTIFY_SOCKET: '@nsidmap-race-nobody' });
  for (;;) { try { await request(p.socket, { id: 1, op: 'ping' }, 500); break; } catch { await sleep(2); } }
  d.signal(process.argv[2] === 'hup' ? 'SIGHUP' : 'SIGTERM');
  if (process.argv[2] === 'hup') { await sleep(300); console.log('running after HUP:', d.running, d.exit); if (!d.running) bad++; d.signal('SIGKILL'); }
  const e = await d.exited;
  if (process.argv[2] !== 'hup') { console.log(e, 'socket left:', existsSync(p.socket)); if (e.code !== 0) bad++; }
}
console.log('bad', bad);
await tmp.cleanup();
