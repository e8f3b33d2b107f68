// What nsidmapd serves, from its `status` (the admin socket's op behind `idmapctl status --json`):
// the gates of the suites' scenarios that need a responder (a scenario whose piece is not served
// is reported as skip). Asks the socket itself: idmapctl loads the whole engine to start, seconds
// under TCG, and the gates poll.
//   node served.mjs SOCKET [SAVE]      (SAVE: write the status JSON there too)
// One line per served interface:
//   nfsd <netns> <procNetRpc>        pipefs <netns> <rpc_pipefs root>
//   clientid <netns> <identifier> <state>
//   responders none                  (the daemon runs no kernel responder at all)
// <netns> is `init` for the host's network namespace, else the namespace's inode number.
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';

const [socket, save] = process.argv.slice(2);

function askStatus(path) {
  return new Promise((resolve, reject) => {
    const sock = connect(path);
    let buf = '';
    sock.setTimeout(10000, () => sock.destroy(new Error('no answer within 10 s')));
    sock.on('connect', () => sock.write(JSON.stringify({ id: 1, op: 'status' }) + '\n'));
    sock.on('data', (c) => {
      buf += c;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      sock.end();
      const res = JSON.parse(buf.slice(0, nl));
      if (res.ok) resolve(res.result);
      else reject(new Error(res.error?.message ?? 'status refused'));
    });
    sock.on('error', reject);
  });
}

let status;
try {
  status = await askStatus(socket);
  if (save) writeFileSync(save, JSON.stringify(status, null, 2) + '\n');
} catch (e) {
  process.stderr.write(`served.mjs: ${e.message}\n`);
  process.exit(0); // no daemon, no answer: nothing served
}
const out = [];
// No responder at all: nothing of this kind is wired into the daemon (no use waiting for a scan).
if ((status.responders ?? []).length === 0) out.push('responders none');
for (const r of status.responders ?? []) {
  for (const d of r.detail ?? []) {
    // The namespace supervisor: one line per network namespace (src/responders/supervisor.ts).
    if (typeof d.init === 'boolean') {
      const ns = d.init ? 'init' : String(d.netns);
      if (d.nfsd) out.push(`nfsd ${ns} ${d.nfsd}`);
      for (const p of d.pipefs ?? []) out.push(`pipefs ${ns} ${p}`);
      if (d.clientid) out.push(`clientid ${ns} ${d.clientid} ${d.clientidState ?? '-'}`);
    }
  }
  // A responder the daemon runs on its own, named after what it serves (nfsd:<dir>, pipefs:<root>):
  // the host's own unless its path goes through another process's /proc entry.
  const m = /^(nfsd|pipefs):(.+)$/.exec(r.name ?? '');
  if (m) {
    const ns = /^\/proc\/[0-9]+\//.test(m[2]) ? (r.detail?.[0]?.netns ?? 'other') : 'init';
    out.push(`${m[1]} ${ns} ${m[2]}`);
  }
}
if (out.length > 0) process.stdout.write([...new Set(out)].join('\n') + '\n');
