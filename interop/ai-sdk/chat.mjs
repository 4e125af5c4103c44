// The AI SDK's chat client, as a Next.js page's useChat runs it, without
// React: AbstractChat (what useChat wraps) with DefaultChatTransport.
//
//   node chat.mjs '{"api": ..., "token": ..., "chatId": ..., "text": ...}'
//   node chat.mjs '{"api": ..., "token": ..., "chatId": ..., "resume": true}'
//
// Sends `text` (or resumes the chat's reply in progress, as
// useChat({resume: true}) does on mount) and prints one JSON line: the
// chat's status and error, the last message as the SDK assembled it, and
// the types of the chunks it read.
import { AbstractChat, DefaultChatTransport } from 'ai';

const config = JSON.parse(process.argv[2]);

class State {
  status = 'ready';
  error = undefined;
  messages = [];
  pushMessage = (message) => { this.messages = this.messages.concat(message); };
  popMessage = () => { this.messages = this.messages.slice(0, -1); };
  replaceMessage = (index, message) => {
    this.messages = [...this.messages.slice(0, index), message, ...this.messages.slice(index + 1)];
  };
  snapshot = (value) => structuredClone(value);
}

class NodeChat extends AbstractChat {
  constructor(init) { super({ ...init, state: new State() }); }
}

const chunkTypes = [];
const reads = [];
const transport = new DefaultChatTransport({
  api: config.api,
  headers: { Authorization: `Bearer ${config.token}` },
  // Records each chunk's type on its way to the chat.
  fetch: async (input, init) => {
    const response = await fetch(input, init);
    if (!response.body || response.status !== 200) return response;
    const [mine, theirs] = response.body.tee();
    reads.push((async () => {
      const text = await new Response(mine).text();
      for (const block of text.split('\n\n')) {
        if (block.startsWith('data: ')) {
          const data = block.slice(6);
          chunkTypes.push(data === '[DONE]' ? data : JSON.parse(data).type);
        }
      }
    })());
    return new Response(theirs, response);
  },
});

let finished = null;
const chat = new NodeChat({
  id: config.chatId,
  transport,
  onFinish: ({ isAbort, isDisconnect, isError, finishReason }) => {
    finished = { isAbort, isDisconnect, isError, finishReason };
  },
});

if (config.resume) {
  await chat.resumeStream();
} else {
  await chat.sendMessage({ text: config.text });
}
await Promise.all(reads);
const last = chat.messages.at(-1) ?? null;
process.stdout.write(JSON.stringify({
  status: chat.status,
  error: chat.error ? String(chat.error.message ?? chat.error) : null,
  finished,
  messages: chat.messages.length,
  message: last,
  chunkTypes,
}) + '\n');
