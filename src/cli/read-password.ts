import type { ReadStream } from 'node:tty';

/** Thrown when no password could be read; the message is for the operator. */
export class PasswordInputError extends Error {
  override readonly name = 'PasswordInputError';
}

const CTRL_C = '\u0003';
const CTRL_D = '\u0004';
const BACKSPACE = ['\u007f', '\b'];

/**
 * Read a password for the CLI. On a terminal it prompts on stderr with hidden input, twice when
 * `confirm` is set. Otherwise it reads the first line of standard input, so scripts can pipe it
 * in. The command line is no place for it, because the shell history and `ps` would show it.
 */
export async function readPassword(
  prompt: string,
  { confirm = false }: { confirm?: boolean } = {},
): Promise<string> {
  const stdin = process.stdin;
  if (!stdin.isTTY) return readFirstLine(stdin);

  const password = await readHidden(stdin, prompt);
  if (confirm && (await readHidden(stdin, 'Repeat the password: ')) !== password) {
    throw new PasswordInputError('The two passwords differ; nothing was changed.');
  }
  return password;
}

/** Read standard input up to the first line break (or its end); a trailing \r is dropped. */
async function readFirstLine(stream: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stream) {
    text += (chunk as Buffer).toString('utf8');
    if (text.includes('\n')) break;
  }
  const line = text.split('\n')[0]?.replace(/\r$/, '') ?? '';
  if (line === '') {
    throw new PasswordInputError(
      'No password on standard input. Pipe it in, such as `printf %s "$PASSWORD" | npm run users -- add NAME`, or run the command in a terminal to be prompted.',
    );
  }
  return line;
}

/** Prompt on stderr and read one line in raw mode, echoing nothing. */
function readHidden(stdin: ReadStream, prompt: string): Promise<string> {
  process.stderr.write(prompt);
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  stdin.resume();

  return new Promise((resolve, reject) => {
    let password = '';
    const finish = (error?: Error) => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (error) reject(error);
      else resolve(password);
    };
    const onData = (chunk: string) => {
      // A paste arrives as one chunk, so look at each character.
      for (const char of chunk) {
        if (char === '\r' || char === '\n') {
          finish();
          return;
        }
        if (char === CTRL_C || char === CTRL_D) {
          finish(new PasswordInputError('Cancelled; nothing was changed.'));
          return;
        }
        if (BACKSPACE.includes(char)) password = Array.from(password).slice(0, -1).join('');
        else password += char;
      }
    };
    stdin.on('data', onData);
  });
}
