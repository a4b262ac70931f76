// Bridle quickstart with the official Anthropic TypeScript SDK (the same steps as
// examples/python/quickstart.py). Runs one session against a real model provider:
//
//   cd examples/typescript && npm install && npx tsc
//   export BRIDLE_BASE_URL=http://127.0.0.1:4040 BRIDLE_API_KEY=sk-bridle-...  # printed by `bridle serve`
//   export MODEL_API_KEY=sk-ant-...                                          # your provider key
//   node dist/quickstart.js "Write hello.txt containing 'hi', then tell me what you did"
//
// Optional: ENGINE=codex or openai-agents (then LLM_BASE_URL=https://api.openai.com/v1 and
// MODEL=gpt-5-codex are the defaults), LLM_BASE_URL, MODEL.
import Anthropic from '@anthropic-ai/sdk';

function required(name: string): string {
  const value = process.env[name];
  if (!value) {
    console.error(`set ${name}`);
    process.exit(2);
  }
  return value;
}

const engine = process.env.ENGINE ?? 'claude';
const defaults = engine === 'claude'
  ? { baseUrl: 'https://api.anthropic.com', model: 'claude-sonnet-4-6' }
  : { baseUrl: 'https://api.openai.com/v1', model: 'gpt-5-codex' };

const client = new Anthropic({ baseURL: required('BRIDLE_BASE_URL'), apiKey: required('BRIDLE_API_KEY') });

const env = await client.beta.environments.create({
  name: 'quickstart',
  config: { type: 'cloud', networking: { type: 'unrestricted' } },
});
const agent = await client.beta.agents.create({
  name: 'quickstart',
  model: process.env.MODEL ?? defaults.model,
  tools: [{ type: 'agent_toolset_20260401' }],
});
// The LLM vault selects the harness and holds the model provider token.
const vault = await client.beta.vaults.create({
  display_name: `${engine} LLM`,
  metadata: {
    'sandbox0.managed_agents.role': 'llm',
    'sandbox0.managed_agents.engine': engine,
    'sandbox0.managed_agents.llm_base_url': process.env.LLM_BASE_URL ?? defaults.baseUrl,
  },
});
// The SDK types `static_bearer` for MCP servers (with an `mcp_server_url`); on an LLM vault it
// is the model provider's token, and Bridle needs no URL there.
type BearerParams = Anthropic.Beta.Vaults.Credentials.BetaManagedAgentsStaticBearerCreateParams;
await client.beta.vaults.credentials.create(vault.id, {
  display_name: 'provider key',
  auth: { type: 'static_bearer', token: required('MODEL_API_KEY') } as BearerParams,
});
const session = await client.beta.sessions.create({
  agent: agent.id,
  environment_id: env.id,
  vault_ids: [vault.id],
});
console.log(`session ${session.id}`);

const prompt = process.argv.slice(2).join(' ') || 'Say hello in one short sentence.';
// Open the stream first: it carries the events that happen after it opens.
const stream = await client.beta.sessions.events.stream(session.id);
await client.beta.sessions.events.send(session.id, {
  events: [{ type: 'user.message', content: [{ type: 'text', text: prompt }] }],
});
for await (const event of stream) {
  if (event.type === 'agent.message') {
    const text = event.content.map((b) => (b.type === 'text' ? b.text : '')).join('');
    console.log(`agent: ${text}`);
  } else if (event.type === 'agent.tool_use') {
    console.log(`tool:  ${event.name} ${JSON.stringify(event.input)}`);
  } else if (event.type === 'session.error') {
    console.log(`error: ${event.error.type}: ${event.error.message} (${event.error.retry_status.type})`);
  } else if (event.type === 'session.status_idle') {
    console.log(`${event.type} ${event.stop_reason.type}`);
    if (event.stop_reason.type !== 'requires_action') break;
  } else if (event.type === 'session.status_terminated') {
    console.log(event.type);
    break;
  }
}
