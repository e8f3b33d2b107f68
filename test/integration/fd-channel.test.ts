/**
 * The real channel implementation (src/responders/channel.ts, poller.ts) on real file
 * descriptors. This machine has no rpc_pipefs or nfsd, so a FIFO stands in: like them it polls
 * readable when a message waits, and read() of an empty one (O_NONBLOCK) returns at once
 * (EAGAIN here, 0 there — the channel takes both as "nothing yet").
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, constants as fsc, mkdtempSync, openSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { errnoOf, fdChannelOpener } from '../../src/responders/channel.js';
import { createPollPoller, IntervalPoller, type Poller } from '../../src/responders/poller.js';
import { REPO } from './harness.js';

const work = mkdtempSync(join(tmpdir(), 'nsidmap-fdch-'));
after(() => rmSync(work, { recursive: true, force: true }));
let n = 0;

function fifo(): string {
  const p = join(work, `f${n++}`);
  execFileSync('mkfifo', [p]);
  return p;
}

const pollers: [string, () => Poller | undefined][] = [
  ['PollPoller (poll(2) on a pool thread)', () => createPollPoller()],
  ['IntervalPoller (fallback)', () => new IntervalPoller(5)],
];

for (const [name, make] of pollers) {
  const poller = make();
  describe(`FdChannel with ${name}`, { skip: poller === undefined && 'poll/eventfd unavailable here' }, () => {
    it('a read waits without blocking the loop, and returns one message when it arrives', async () => {
      const path = fifo();
      const ch = await fdChannelOpener(poller)(path, 'rw');
      const writer = openSync(path, fsc.O_WRONLY | fsc.O_NONBLOCK);
      try {
        let ticks = 0;
        const timer = setInterval(() => ticks++, 1);
        const t0 = performance.now();
        setTimeout(() => writeSync(writer, Buffer.alloc(140, 7)), 30);
        const got = await ch.read();
        clearInterval(timer);
        assert.equal(got?.length, 140);
        assert.ok(performance.now() - t0 >= 25);
        // a read that blocked the loop would leave no tick at all; a loaded CI machine may delay timers
        assert.ok(ticks >= 1, `the event loop ran meanwhile (${ticks} ticks)`);
      } finally {
        closeSync(writer);
        await ch.close();
      }
    });

    it('serves several channels at once, each with its own messages', async () => {
      const paths = [fifo(), fifo(), fifo()];
      const chans = await Promise.all(paths.map((p) => fdChannelOpener(poller)(p, 'rw')));
      const writers = paths.map((p) => openSync(p, fsc.O_WRONLY | fsc.O_NONBLOCK));
      try {
        const reads = chans.map((c) => c.read());
        writers.forEach((w, i) => setTimeout(() => writeSync(w, Buffer.from(`msg${i}`)), 5 * (3 - i)));
        assert.deepEqual((await Promise.all(reads)).map(String), ['msg0', 'msg1', 'msg2']);
      } finally {
        writers.forEach((w) => closeSync(w));
        await Promise.all(chans.map((c) => c.close()));
      }
    });

    it('close() ends a pending read with null; later calls fail with EBADF', async () => {
      const ch = await fdChannelOpener(poller)(fifo(), 'rw');
      const pending = ch.read();
      setTimeout(() => void ch.close(), 10);
      assert.equal(await pending, null);
      assert.equal(await ch.read(), null);
      await assert.rejects(ch.write(Buffer.from('x')), (e) => errnoOf(e) === 'EBADF');
    });

    it('writes go out as one write each', async () => {
      const path = fifo();
      const reader = openSync(path, fsc.O_RDONLY | fsc.O_NONBLOCK);
      const ch = await fdChannelOpener(poller)(path, 'w');
      try {
        await ch.write(Buffer.from('1700000000\n'));
        const buf = Buffer.alloc(64);
        assert.equal(buf.subarray(0, readSync(reader, buf)).toString(), '1700000000\n');
      } finally {
        await ch.close();
        closeSync(reader);
      }
    });
  });
}

describe('the channel plumbing', () => {
  it('names errno values libuv does not know: ENOKEY is errno 126', () => {
    assert.equal(errnoOf({ errno: -126, code: 'Unknown system error -126' }), 'ENOKEY');
    assert.equal(errnoOf({ errno: -22, code: 'EINVAL' }), 'EINVAL');
    assert.equal(errnoOf({ errnoName: 'EPIPE' }), 'EPIPE');
    assert.equal(errnoOf(new Error('plain')), undefined);
  });

  it('opening a missing file fails with ENOENT (the listener waits for it)', async () => {
    await assert.rejects(fdChannelOpener()(join(work, 'absent'), 'rw'), (e) => errnoOf(e) === 'ENOENT');
  });

  it('a plain file that always polls readable does not spin the loop', async () => {
    const p = join(work, 'plain');
    writeFileSync(p, '');
    const poller = createPollPoller() ?? new IntervalPoller(5);
    const ch = await fdChannelOpener(poller)(p, 'rw');
    const before = process.cpuUsage();
    const r = ch.read();
    await new Promise((res) => setTimeout(res, 300));
    await ch.close();
    assert.equal(await r, null);
    const used = process.cpuUsage(before);
    assert.ok(used.user + used.system < 250_000, `read of an always-readable empty file burned ${(used.user + used.system) / 1000} ms CPU in 300 ms`);
  });

  it('the process exits once the last channel is closed: no poll is left holding the loop', () => {
    const script = `
      import { fdChannelOpener } from './src/responders/channel.ts';
      import { execFileSync } from 'node:child_process';
      execFileSync('mkfifo', [process.argv[1]]);
      const ch = await fdChannelOpener()(process.argv[1], 'rw');
      const r = ch.read();
      setTimeout(() => ch.close(), 50);
      console.log(await r);
    `;
    const t0 = Date.now();
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, join(work, 'exit-fifo')], { cwd: REPO, timeout: 10_000, encoding: 'utf8' });
    assert.equal(out.trim(), 'null');
    assert.ok(Date.now() - t0 < 8000);
  });
});
