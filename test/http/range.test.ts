import { selectRange, type RangeSelection } from '../../src/http/range';

const SIZE = 1000;

const CASES: [header: string | undefined, expected: RangeSelection][] = [
  [undefined, { kind: 'full' }],
  ['bytes=0-99', { kind: 'partial', start: 0, end: 99 }],
  ['bytes=0-', { kind: 'partial', start: 0, end: 999 }],
  ['bytes=990-', { kind: 'partial', start: 990, end: 999 }],
  ['bytes=-10', { kind: 'partial', start: 990, end: 999 }],
  ['bytes=-5000', { kind: 'partial', start: 0, end: 999 }],
  ['bytes=900-5000', { kind: 'partial', start: 900, end: 999 }],
  ['bytes=999-999', { kind: 'partial', start: 999, end: 999 }],
  ['BYTES=0-9', { kind: 'partial', start: 0, end: 9 }],
  ['bytes=1000-', { kind: 'unsatisfiable' }],
  ['bytes=1000-1000', { kind: 'unsatisfiable' }],
  ['bytes=-0', { kind: 'unsatisfiable' }],
  ['bytes=abc', { kind: 'full' }],
  ['bytes=', { kind: 'full' }],
  ['bytes=-', { kind: 'full' }],
  ['', { kind: 'full' }],
  ['bytes=5-2', { kind: 'full' }],
  ['bytes=2000-1000', { kind: 'full' }],
  ['items=0-9', { kind: 'full' }],
  ['items=5-2', { kind: 'full' }],
  ['items=2000-', { kind: 'full' }],
  ['bytes=-1000', { kind: 'partial', start: 0, end: 999 }],
  ['bytes=0-1,5-6', { kind: 'full' }],
  ['bytes=0-1,2000-2001', { kind: 'full' }],
  ['bytes=2000-2001,3000-', { kind: 'full' }],
];

describe('selectRange', () => {
  it.each(CASES)('Range %p selects %o', (header, expected) => {
    expect(selectRange(header, SIZE)).toEqual(expected);
  });

  it('empty representation is unsatisfiable', () => {
    expect(selectRange('bytes=0-', 0)).toEqual({ kind: 'unsatisfiable' });
    expect(selectRange('bytes=-5', 0)).toEqual({ kind: 'unsatisfiable' });
  });
});
