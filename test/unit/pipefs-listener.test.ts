/**
 * listClnt, the listing of `<rpc_pipefs>/nfs` every rescan brings the client table in line with:
 * only "there is no such directory" may empty the table (and so close every pipe, aborting the
 * upcalls in flight); any other failure of readdir (EMFILE, ENOMEM, EACCES…) is not an answer.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { channelError } from '../../src/responders/channel.js';
import { listClnt, type ListDir } from '../../src/responders/pipefs/listener.js';

const entry = (name: string, dir = true) => ({ name, isDirectory: () => dir });
const failing = (errno: string): ListDir => async (path) => {
  throw channelError(errno, `scandir '${path}'`);
};

describe('pipefs listClnt', () => {
  it('lists the clnt<hex> directories, nothing else', async () => {
    const list: ListDir = async () => [entry('clnt1a'), entry('clnt2b', false), entry('clntzz'), entry('cache'), entry('clnt0')];
    assert.deepEqual([...(await listClnt('/p/nfs', list))].sort(), ['clnt0', 'clnt1a']);
  });

  for (const errno of ['ENOENT', 'ENOTDIR']) {
    it(`${errno} means no clients`, async () => {
      assert.deepEqual([...(await listClnt('/p/nfs', failing(errno)))], []);
    });
  }

  it('with the real readdir: a missing directory and a file in its place are no clients', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'nsidmap-listclnt-'));
    try {
      writeFileSync(join(dir, 'nfs'), '');
      assert.deepEqual([...(await listClnt(join(dir, 'missing')))], []);
      assert.deepEqual([...(await listClnt(join(dir, 'nfs')))], []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  for (const errno of ['EMFILE', 'ENFILE', 'ENOMEM', 'EACCES', 'EIO']) {
    it(`${errno} is not "no clients": it is thrown, for the caller to keep its table`, async () => {
      await assert.rejects(listClnt('/p/nfs', failing(errno)), (e: Error & { code?: string }) => e.code === errno);
    });
  }
});
