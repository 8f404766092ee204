import http from 'node:http';
import { makeImage, makeLargePng } from '../helpers/images';
import { pendingMultipartUploads, storedCounts, waitFor } from '../helpers/faults';
import {
  csrfFrom,
  loggedInAgent,
  startTestStack,
  uploadFile,
  type TestStack,
} from '../helpers/stack';

const MiB = 1024 * 1024;

let stack: TestStack;
let agent: Awaited<ReturnType<typeof loggedInAgent>>;
let csrf: string;
let cookie: string;
/** Names of the S3 commands that the app sent, in order. */
const commands: string[] = [];

beforeAll(async () => {
  stack = await startTestStack();
  agent = await loggedInAgent(stack.url);
  const page = await agent.get('/admin/upload');
  csrf = csrfFrom(page.text);
  cookie = page.request.cookies;
  stack.runtime.s3Client.middlewareStack.add(
    (next, context) => (args) => {
      commands.push(context.commandName ?? 'unknown');
      return next(args);
    },
    { step: 'initialize', name: 'recordCommandNames' },
  );
});

afterAll(async () => {
  await stack.stop();
});

interface FilePart {
  name: string;
  content: Buffer;
}

/** Encode a multipart body with the CSRF field first, then one part per file. */
function multipartBody(files: FilePart[]): { body: Buffer; contentType: string } {
  const boundary = `----s3gate-abort-${Math.random().toString(16).slice(2)}`;
  const parts: Buffer[] = [
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="_csrf"\r\n\r\n${csrf}\r\n`),
  ];
  for (const file of files) {
    parts.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="images"; filename="${file.name}"\r\n` +
          'Content-Type: image/png\r\n\r\n',
      ),
      file.content,
      Buffer.from('\r\n'),
    );
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return { body: Buffer.concat(parts), contentType: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Send the first `sentBytes` bytes of an upload that announces its full length, wait until
 * `sentEnough` holds, then drop the connection as a closed browser tab would.
 */
async function abortUpload(
  files: FilePart[],
  sentBytes: number,
  sentEnough: () => boolean,
): Promise<void> {
  const { body, contentType } = multipartBody(files);
  const request = http.request(`${stack.url}/admin/images`, {
    method: 'POST',
    headers: {
      cookie,
      accept: 'application/json',
      'content-type': contentType,
      'content-length': body.length,
    },
  });
  request.on('error', () => undefined);
  request.write(body.subarray(0, sentBytes));
  const reached = await waitFor(sentEnough, 5000);
  request.destroy();
  if (!reached) throw new Error('the server never reached the point where the test aborts');
}

function abortedUploads(): number {
  return stack.logs.lines.filter((line) => line.includes('"event":"upload_aborted"')).length;
}

describe('upload aborted by the client', () => {
  it('mid-file leaves no object and no row', async () => {
    const before = await storedCounts(stack);
    const aborted = abortedUploads();
    const content = await makeLargePng(1 * MiB);
    const sentAt = Date.now();
    commands.length = 0;

    // Small files go to S3 in one PutObject once complete, so until the end nothing is sent.
    await abortUpload([{ name: 'half.png', content }], 600 * 1024, () => Date.now() - sentAt > 300);

    expect(await waitFor(() => abortedUploads() === aborted + 1)).toBe(true);
    expect(commands).not.toContain('PutObjectCommand');
    expect(await storedCounts(stack)).toEqual(before);
  });

  it('during a multipart upload aborts it and leaves no object and no row', async () => {
    const before = await storedCounts(stack);
    const aborted = abortedUploads();
    const multipartBefore = pendingMultipartUploads(stack);
    const content = await makeLargePng(8 * MiB);
    commands.length = 0;

    // 7 MiB in: the first 5 MiB part is in S3, the second part is still being read.
    await abortUpload([{ name: 'big.png', content }], 7 * MiB, () =>
      commands.includes('UploadPartCommand'),
    );

    expect(await waitFor(() => abortedUploads() === aborted + 1)).toBe(true);
    expect(commands).toContain('CreateMultipartUploadCommand');
    expect(commands).toContain('AbortMultipartUploadCommand');
    expect(commands).not.toContain('CompleteMultipartUploadCommand');
    expect(await storedCounts(stack)).toEqual(before);
    // Known limit of @20minutes/s3rver 4.0.4: it does not implement AbortMultipartUpload, so the
    // parts of the aborted upload stay in its folder (never as an object). AWS removes them.
    expect(pendingMultipartUploads(stack)).toBe(multipartBefore + 1);
  });

  it('after a first complete file deletes that file too', async () => {
    const before = await storedCounts(stack);
    const aborted = abortedUploads();
    const first = await makeImage('png');
    const second = await makeLargePng(1 * MiB);
    const { body } = multipartBody([{ name: 'first.png', content: first }]);
    commands.length = 0;

    // The first file is complete, so it reaches S3; the second is cut halfway.
    await abortUpload(
      [
        { name: 'first.png', content: first },
        { name: 'second.png', content: second },
      ],
      body.length + 500 * 1024,
      () => commands.includes('PutObjectCommand'),
    );

    expect(await waitFor(() => abortedUploads() === aborted + 1)).toBe(true);
    expect(commands).toContain('DeleteObjectCommand');
    expect(await storedCounts(stack)).toEqual(before);
  });

  it('leaves the app ready for the next upload', async () => {
    const response = await uploadFile(agent, await makeImage('png'), 'after.png', 'image/png');

    expect(response.status).toBe(201);
  });
});

describe('concurrent uploads', () => {
  it('store all ten, each with its object and row', async () => {
    const before = await storedCounts(stack);
    const images = await Promise.all(
      Array.from({ length: 10 }, (_, i) => makeImage('png', 20 + i, 20)),
    );

    const responses = await Promise.all(
      images.map((image, i) => uploadFile(agent, image, `parallel-${i}.png`, 'image/png')),
    );

    expect(responses.map((r) => r.status)).toEqual(Array.from({ length: 10 }, () => 201));
    const ids = responses.map((r) => (r.body as { images: { id: string }[] }).images[0]?.id);
    expect(new Set(ids).size).toBe(10);
    expect(await storedCounts(stack)).toEqual({
      objects: before.objects + 10,
      rows: before.rows + 10,
    });
    // Each id serves the bytes that were uploaded under it.
    for (const [i, id] of ids.entries()) {
      const location = (await agent.get(`/image/${id}`).redirects(0)).headers.location ?? '';
      const object = Buffer.from(await (await fetch(location)).arrayBuffer());
      expect(object.equals(images[i] as Buffer)).toBe(true);
    }
  });
});
