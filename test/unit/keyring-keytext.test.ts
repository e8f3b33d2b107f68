/**
 * KEYCTL_DESCRIBE and /proc/keys text, as the kernel prints it (docs/PROTOCOLS.md §1). Lines
 * below were read from this machine's kernel (6.18) and from the VM captures.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { findRequesterPid, parseDescribe, parseProcKeysLine } from '../../src/responders/keyring/keytext.js';
import type { KeyDescription, ProcKeysLine } from '../../src/responders/keyring/keytext.js';
import { CAPTURED } from '../fixtures/keyring/captures.js';

describe('parseDescribe', () => {
  const ok: Array<[string, KeyDescription]> = [
    ['id_resolver;0;0;3b010000;uid:root@vmtest.example', { type: 'id_resolver', uid: 0, gid: 0, perm: 0x3b010000, description: 'uid:root@vmtest.example' }],
    ['.request_key_auth;0;0;1b010000;21d8eb56', { type: '.request_key_auth', uid: 0, gid: 0, perm: 0x1b010000, description: '21d8eb56' }],
    ['user;1000;100;3f010000;a;b;c', { type: 'user', uid: 1000, gid: 100, perm: 0x3f010000, description: 'a;b;c' }],
    ['user;0;0;3f010000;trailing;', { type: 'user', uid: 0, gid: 0, perm: 0x3f010000, description: 'trailing;' }],
    ['user;0;0;3f010000;', { type: 'user', uid: 0, gid: 0, perm: 0x3f010000, description: '' }],
    ['keyring;0;0;3f130000;_ses\0', { type: 'keyring', uid: 0, gid: 0, perm: 0x3f130000, description: '_ses' }],
    ['user;4294967295;65534;ffffffff;x', { type: 'user', uid: 4294967295, gid: 65534, perm: 0xffffffff, description: 'x' }],
  ];
  for (const [text, want] of ok) {
    it(`parses ${JSON.stringify(text)}`, () => assert.deepEqual(parseDescribe(text), want));
  }

  const bad = [
    '',
    'user;0;0;3f010000',
    ';0;0;3f010000;x',
    'user;-1;0;3f010000;x',
    'user;01;0;3f010000;x',
    'user;0;4294967296;3f010000;x',
    'user;0;0;3F010000;x',
    'user;0;0;3f01000;x',
    'user;0;0;0x3f0100;x',
    'user; 0;0;3f010000;x',
  ];
  for (const text of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => assert.equal(parseDescribe(text), undefined));
  }

  it('parses every rdescribe of the VM capture back to its upcall description', () => {
    for (const c of CAPTURED) {
      if (c.rdescribe === undefined) continue;
      assert.equal(parseDescribe(c.rdescribe)?.description, c.description);
      assert.equal(parseDescribe(c.rdescribe)?.type, c.keyType);
    }
  });
});

describe('parseProcKeysLine', () => {
  const line = (over: Partial<ProcKeysLine>): ProcKeysLine => ({
    serial: 0,
    flags: 'I------',
    usage: 1,
    expiry: 'perm',
    perm: 0,
    uid: 0,
    gid: 0,
    type: 'user',
    summary: '',
    ...over,
  });
  const ok: Array<[string, ProcKeysLine]> = [
    [
      '187fe047 I------     7 perm 1b010000     0     0 .request_ key:1cffb050 pid:18980 ci:55',
      line({ serial: 0x187fe047, usage: 7, perm: 0x1b010000, type: '.request_', summary: 'key:1cffb050 pid:18980 ci:55' }),
    ],
    [
      '07d5b03e I------  8 perm 1b010000  0  0 .request_ key:21d8eb56 pid:22619 ci:0',
      line({ serial: 0x07d5b03e, usage: 8, perm: 0x1b010000, type: '.request_', summary: 'key:21d8eb56 pid:22619 ci:0' }),
    ],
    [
      '1cffb050 I--Q---     2   1h 3f010000     0     0 user      nsidmap-keyctl-test:manual:3: 1',
      line({ serial: 0x1cffb050, flags: 'I--Q---', usage: 2, expiry: '1h', perm: 0x3f010000, summary: 'nsidmap-keyctl-test:manual:3: 1' }),
    ],
    [
      '2b26ccaa IR-Q---     2 expd 3f010000     0     0 user      nsidmap-smoke:a;b: 0',
      line({ serial: 0x2b26ccaa, flags: 'IR-Q---', usage: 2, expiry: 'expd', perm: 0x3f010000, summary: 'nsidmap-smoke:a;b: 0' }),
    ],
    [
      '19ce0063 I--Q---     1 perm 1f3f0000     0 65534 keyring   _uid_ses.0: 1',
      line({ serial: 0x19ce0063, flags: 'I--Q---', perm: 0x1f3f0000, gid: 65534, type: 'keyring', summary: '_uid_ses.0: 1' }),
    ],
    [
      '3a0b0c0d I--Q-N-     1  59s 3f010000    -2    -2 id_resolv uid:x y@z',
      line({ serial: 0x3a0b0c0d, flags: 'I--Q-N-', expiry: '59s', perm: 0x3f010000, uid: 4294967294, gid: 4294967294, type: 'id_resolv', summary: 'uid:x y@z' }),
    ],
    [
      '0000002a I------ 123456 12345w 3f010000 1000000 1000000 cifs.idma os:S-1-5-18: 4',
      line({ serial: 42, usage: 123456, expiry: '12345w', perm: 0x3f010000, uid: 1000000, gid: 1000000, type: 'cifs.idma', summary: 'os:S-1-5-18: 4' }),
    ],
  ];
  for (const [text, want] of ok) {
    it(`parses ${JSON.stringify(text.slice(0, 60))}`, () => assert.deepEqual(parseProcKeysLine(text), want));
  }

  const bad = [
    '',
    '187fe047',
    '187fe04 I------     7 perm 1b010000     0     0 .request_ key:1',
    '187fe047 I-----     7 perm 1b010000     0     0 .request_ key:1',
    '187fe047 X------     7 perm 1b010000     0     0 .request_ key:1',
    '187fe047 I------     7 perm 1b01000     0     0 .request_ key:1',
    '187fe047 I------     7 perm 1b010000     0     0 short',
  ];
  for (const text of bad) {
    it(`rejects ${JSON.stringify(text)}`, () => assert.equal(parseProcKeysLine(text), undefined));
  }
});

describe('findRequesterPid', () => {
  const procKeys = [
    '126ee34a I------     1 perm 0f0b0000     0     0 keyring   .blacklist: empty',
    '0aaaaaaa I------     2 perm 1b010000     0     0 .request_ key:1cffb05 pid:111 ci:0',
    '187fe047 I------     7 perm 1b010000     0     0 .request_ key:1cffb050 pid:18980 ci:55',
    '187fe048 I------     7 perm 1b010000     0     0 .request_ key:2a pid:4242 ci:3',
    'garbage that is not a key line key:1cffb050 pid:1',
    '1cffb050 I--Q---     2   1h 3f010000     0     0 user      key:99 pid:7 ci:0',
    '',
  ].join('\n');

  const cases: Array<[string, number, number | undefined]> = [
    ['the auth key of the target', 0x1cffb050, 18980],
    ['a prefix of another serial is not a match', 0x1cffb05, 111],
    ['short hex serials, as request_key_auth prints them', 42, 4242],
    ['no auth key for the target', 0x12345678, undefined],
    ['a user key that merely looks like an auth key', 0x99, undefined],
  ];
  for (const [what, serial, pid] of cases) {
    it(what, () => assert.equal(findRequesterPid(procKeys, serial), pid));
  }

  it('finds nothing in an empty /proc/keys', () => assert.equal(findRequesterPid('', 1), undefined));
});
