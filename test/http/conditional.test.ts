import type { IncomingHttpHeaders } from 'node:http';
import {
  ifRangeMatches,
  isNotModified,
  isPreconditionFailed,
  parseEntityTags,
  type Validators,
} from '../../src/http/conditional';

const ETAG = '"5d41402abc4b2a76b9719d911017c592"';
const LAST_MODIFIED = 'Wed, 02 Dec 2026 10:00:00 GMT';
const EARLIER = 'Wed, 02 Dec 2026 09:00:00 GMT';
const LATER = 'Wed, 02 Dec 2026 11:00:00 GMT';

const KNOWN: Validators = { etag: ETAG, lastModified: LAST_MODIFIED };
const NO_ETAG: Validators = { etag: undefined, lastModified: LAST_MODIFIED };

type Case = [name: string, headers: IncomingHttpHeaders, validators: Validators, expected: boolean];

describe('parseEntityTags', () => {
  it('splits a list and keeps commas inside quotes', () => {
    expect(parseEntityTags('W/"a", "b,c" ,"d"')).toEqual(['W/"a"', '"b,c"', '"d"']);
  });

  it('returns nothing for a value without tags', () => {
    expect(parseEntityTags('abc')).toEqual([]);
  });
});

describe('isNotModified', () => {
  const cases: Case[] = [
    ['no conditional header', {}, KNOWN, false],
    ['INM exact', { 'if-none-match': ETAG }, KNOWN, true],
    ['INM weak form of the ETag', { 'if-none-match': `W/${ETAG}` }, KNOWN, true],
    ['INM list containing the ETag', { 'if-none-match': `"x", ${ETAG}` }, KNOWN, true],
    ['INM *', { 'if-none-match': '*' }, KNOWN, true],
    ['INM * without ETag', { 'if-none-match': '*' }, NO_ETAG, true],
    ['INM other', { 'if-none-match': '"x"' }, KNOWN, false],
    ['INM without ETag', { 'if-none-match': ETAG }, NO_ETAG, false],
    ['IMS equal', { 'if-modified-since': LAST_MODIFIED }, KNOWN, true],
    ['IMS later', { 'if-modified-since': LATER }, KNOWN, true],
    ['IMS earlier', { 'if-modified-since': EARLIER }, KNOWN, false],
    ['IMS invalid', { 'if-modified-since': 'not a date' }, KNOWN, false],
    ['INM other beats IMS', { 'if-none-match': '"x"', 'if-modified-since': LATER }, KNOWN, false],
    ['no-cache reload', { 'if-none-match': ETAG, 'cache-control': 'no-cache' }, KNOWN, false],
  ];

  it.each(cases)('%s gives %p', (_name, headers, validators, expected) => {
    expect(isNotModified(headers, validators)).toBe(expected);
  });
});

describe('isPreconditionFailed', () => {
  const cases: Case[] = [
    ['no precondition', {}, KNOWN, false],
    ['IM exact', { 'if-match': ETAG }, KNOWN, false],
    ['IM list containing the ETag', { 'if-match': `"x", ${ETAG}` }, KNOWN, false],
    ['IM *', { 'if-match': '*' }, KNOWN, false],
    ['IM weak form of the ETag', { 'if-match': `W/${ETAG}` }, KNOWN, true],
    ['IM other', { 'if-match': '"x"' }, KNOWN, true],
    ['IM without ETag is left to S3', { 'if-match': '"x"' }, NO_ETAG, false],
    ['IUS earlier', { 'if-unmodified-since': EARLIER }, KNOWN, true],
    ['IUS equal', { 'if-unmodified-since': LAST_MODIFIED }, KNOWN, false],
    ['IUS invalid', { 'if-unmodified-since': 'soon' }, KNOWN, false],
    ['IM match beats IUS', { 'if-match': ETAG, 'if-unmodified-since': EARLIER }, KNOWN, false],
  ];

  it.each(cases)('%s gives %p', (_name, headers, validators, expected) => {
    expect(isPreconditionFailed(headers, validators)).toBe(expected);
  });
});

describe('ifRangeMatches', () => {
  const cases: Case[] = [
    ['no If-Range', {}, KNOWN, true],
    ['strong ETag', { 'if-range': ETAG }, KNOWN, true],
    ['old ETag', { 'if-range': '"old"' }, KNOWN, false],
    ['weak ETag', { 'if-range': `W/${ETAG}` }, KNOWN, false],
    ['ETag while ours is unknown', { 'if-range': ETAG }, NO_ETAG, false],
    ['Last-Modified date', { 'if-range': LAST_MODIFIED }, KNOWN, true],
    ['earlier date', { 'if-range': EARLIER }, KNOWN, false],
    ['later date', { 'if-range': LATER }, KNOWN, false],
    ['invalid date', { 'if-range': 'tomorrow' }, KNOWN, false],
    ['repeated header', { 'if-range': [ETAG, ETAG] }, KNOWN, false],
  ];

  it.each(cases)('%s gives %p', (_name, headers, validators, expected) => {
    expect(ifRangeMatches(headers, validators)).toBe(expected);
  });
});
