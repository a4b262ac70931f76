// Smoke test of the official TypeScript SDK (@anthropic-ai/sdk, pinned in package.json)
// against a live `bridle serve`. Run by tests/api_ts_sdk.rs with BRIDLE_BASE_URL and
// BRIDLE_API_KEY set. Exits non-zero on the first failed check.
import Anthropic, { toFile } from '@anthropic-ai/sdk';
import assert from 'node:assert/strict';

const baseURL = process.env.BRIDLE_BASE_URL;
const apiKey = process.env.BRIDLE_API_KEY;
if (!baseURL || !apiKey) {
  console.error('BRIDLE_BASE_URL and BRIDLE_API_KEY must be set');
  process.exit(2);
}

const client = new Anthropic({ baseURL, apiKey, authToken: null, maxRetries: 0, timeout: 30_000 });
const tag = Math.random().toString(36).slice(2, 10);
let checks = 0;
const ok = (what) => {
  checks += 1;
  console.log(`ok ${checks} - ${what}`);
};

const withTimeout = (p, ms, what) =>
  Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(`timed out: ${what}`)), ms))]);

async function main() {
  const env = await client.beta.environments.create({
    name: `ts-env-${tag}`,
    config: { type: 'cloud', networking: { type: 'unrestricted' }, packages: { pip: ['rich'] } },
  });
  assert.match(env.id, /^env_/);
  assert.equal(env.config.type, 'cloud');
  ok('environments.create');

  const agent = await client.beta.agents.create({ name: `ts-agent-${tag}`, model: 'claude-sonnet-4-6' });
  assert.match(agent.id, /^agent_/);
  assert.equal(agent.version, 1);
  assert.equal(agent.model.id, 'claude-sonnet-4-6');
  ok('agents.create');

  const vault = await client.beta.vaults.create({
    display_name: `ts-vault-${tag}`,
    metadata: { 'sandbox0.managed_agents.role': 'llm', 'sandbox0.managed_agents.engine': 'claude' },
  });
  assert.match(vault.id, /^vlt_/);
  const secret = `ts-secret-${tag}`;
  const cred = await client.beta.vaults.credentials.create(vault.id, {
    display_name: 'model key',
    auth: { type: 'static_bearer', token: secret },
  });
  assert.match(cred.id, /^vcrd_/);
  assert.ok(!JSON.stringify(cred).includes(secret), 'secret echoed by credentials.create');
  ok('vaults.create + credentials.create (secret not echoed)');

  const session = await client.beta.sessions.create({
    agent: agent.id,
    environment_id: env.id,
    vault_ids: [vault.id],
    title: `ts-session-${tag}`,
  });
  assert.match(session.id, /^sesn_/);
  assert.equal(session.status, 'idle');
  assert.deepEqual(session.vault_ids, [vault.id]);
  ok('sessions.create with an LLM vault');

  const sent = await client.beta.sessions.events.send(session.id, {
    events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello from ts' }] }],
  });
  assert.equal(sent.data.length, 1);
  assert.match(sent.data[0].id, /^sevt_/);
  ok('events.send');

  const listed = [];
  for await (const ev of client.beta.sessions.events.list(session.id, { types: ['user.message'], limit: 10 })) {
    listed.push(ev);
  }
  assert.deepEqual(listed.map((e) => e.id), [sent.data[0].id]);
  assert.equal(listed[0].content[0].text, 'hello from ts');
  ok('events.list (auto-paginated, types[] filter)');

  const sessions = [];
  for await (const s of client.beta.sessions.list({ agent_id: agent.id })) sessions.push(s.id);
  assert.deepEqual(sessions, [session.id]);
  ok('sessions.list');

  // Stream: open first, then send, then receive that event.
  const stream = await client.beta.sessions.events.stream(session.id);
  const received = (async () => {
    for await (const ev of stream) {
      if (ev.type === 'user.message') return ev;
    }
    throw new Error('stream ended without the event');
  })();
  const second = await client.beta.sessions.events.send(session.id, {
    events: [{ type: 'user.message', content: [{ type: 'text', text: 'streamed' }] }],
  });
  const ev = await withTimeout(received, 15_000, 'stream event');
  assert.equal(ev.id, second.data[0].id);
  assert.equal(ev.content[0].text, 'streamed');
  stream.controller.abort();
  ok('events.stream');

  // An API error surfaces as the SDK's typed error.
  try {
    await client.beta.agents.retrieve('agent_011CZkYpogX7uDKUyvBTophP');
    assert.fail('expected a 404');
  } catch (err) {
    assert.ok(err instanceof Anthropic.NotFoundError, `expected NotFoundError, got ${err}`);
    assert.equal(err.error?.type, 'error');
    assert.equal(err.error?.error?.type, 'not_found_error');
    ok('typed NotFoundError with the error envelope');
  }

  // A running session cannot be deleted: interrupt, then wait until it is no longer running
  // (the runner may have picked up the messages above).
  await client.beta.sessions.events.send(session.id, { events: [{ type: 'user.interrupt' }] });
  const until = Date.now() + 60_000;
  let status = (await client.beta.sessions.retrieve(session.id)).status;
  while ((status === 'running' || status === 'rescheduling') && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 250));
    status = (await client.beta.sessions.retrieve(session.id)).status;
  }
  assert.ok(status === 'idle' || status === 'terminated', `session still ${status} after an interrupt`);
  const deleted = await client.beta.sessions.delete(session.id);
  assert.equal(deleted.type, 'session_deleted');
  ok('sessions.delete');

  // Files: 2.5 MiB (three database chunks) up, listed, down byte for byte, deleted.
  const bytes = Buffer.alloc(5 * 512 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + (i >> 11)) & 0xff;
  const file = await client.beta.files.upload({ file: await toFile(bytes, `ts-${tag}.bin`, { type: 'application/x-bridle-test' }) });
  assert.match(file.id, /^file_/);
  assert.equal(file.size_bytes, bytes.length);
  assert.equal(file.mime_type, 'application/x-bridle-test');
  assert.equal(file.filename, `ts-${tag}.bin`);
  assert.deepEqual(await client.beta.files.retrieveMetadata(file.id), file);
  const files = [];
  for await (const f of client.beta.files.list({ limit: 1 })) files.push(f.id);
  assert.ok(files.includes(file.id), 'files.list misses the upload');
  const down = Buffer.from(await (await client.beta.files.download(file.id)).arrayBuffer());
  assert.ok(down.equals(bytes), 'downloaded bytes differ');
  assert.equal((await client.beta.files.delete(file.id)).type, 'file_deleted');
  ok('files.upload + retrieveMetadata + list + download + delete');

  console.log(`${checks} passed, 0 failed`);
}

main().catch((err) => {
  console.error('FAILED:', err);
  console.log(`${checks} passed, 1 failed`);
  process.exit(1);
});
