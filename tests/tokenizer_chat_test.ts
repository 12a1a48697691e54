import assert from "node:assert/strict";
import { UserError } from "../src/core/errors.ts";
import {
  byteTokenizerConfig,
  byteTokenizerJson,
  type ChatMessage,
  createTokenizerFromJson,
  loadTokenizer,
  strftime,
} from "../src/tokenizer/mod.ts";
import { fixture } from "./tokenizer_fixtures.ts";

/** A tokenizer whose only interesting part is its chat_template (the byte tokenizer's files). */
function withTemplate(chatTemplate: unknown) {
  return createTokenizerFromJson({
    tokenizerJson: byteTokenizerJson(),
    tokenizerConfig: { ...byteTokenizerConfig(), chat_template: chatTemplate },
  });
}

const CONVERSATION: ChatMessage[] = [
  { role: "system", content: "You are helpful." },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Hello! How can I help?" },
  { role: "user", content: "Tell me a joke." },
];

Deno.test("applyChatTemplate() renders the llama3 template", async () => {
  const tok = await fixture("llama3");
  const expected = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>" +
    "<|start_header_id|>assistant<|end_header_id|>\n\nHello! How can I help?<|eot_id|>" +
    "<|start_header_id|>user<|end_header_id|>\n\nTell me a joke.<|eot_id|>" +
    "<|start_header_id|>assistant<|end_header_id|>\n\n";
  assert.equal(tok.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true }), expected);
  // This template appends the assistant header unconditionally, so add_generation_prompt changes nothing.
  assert.equal(tok.applyChatTemplate(CONVERSATION, { addGenerationPrompt: false }), expected);
  // `| trim` strips the content; bos_token only precedes the first message.
  assert.equal(
    tok.applyChatTemplate([{ role: "user", content: "  spaced \n" }]),
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nspaced<|eot_id|>" +
      "<|start_header_id|>assistant<|end_header_id|>\n\n",
  );
});

Deno.test("applyChatTemplate() renders the qwen3 template with and without a generation prompt", async () => {
  const tok = await fixture("qwen3");
  const body = "<|im_start|>system\nYou are helpful.<|im_end|>\n" +
    "<|im_start|>user\nHi<|im_end|>\n" +
    "<|im_start|>assistant\nHello! How can I help?<|im_end|>\n" +
    "<|im_start|>user\nTell me a joke.<|im_end|>\n";
  assert.equal(tok.applyChatTemplate(CONVERSATION, { addGenerationPrompt: false }), body);
  assert.equal(tok.applyChatTemplate(CONVERSATION, { addGenerationPrompt: true }), body + "<|im_start|>assistant\n");
  assert.equal(tok.applyChatTemplate(CONVERSATION), body, "add_generation_prompt defaults to false");
});

Deno.test("applyChatTemplate() drops qwen3 reasoning of earlier turns", async () => {
  const tok = await fixture("qwen3");
  const messages: ChatMessage[] = [
    { role: "user", content: "Q1" },
    { role: "assistant", content: "<think>\nR1\n</think>\n\nA1" },
    { role: "user", content: "Q2" },
  ];
  assert.equal(
    tok.applyChatTemplate(messages, { addGenerationPrompt: true }),
    "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n" +
      "<|im_start|>assistant\n",
  );
});

Deno.test("applyChatTemplate() passes extra variables to the template", async () => {
  const tok = await fixture("qwen3");
  const out = tok.applyChatTemplate([{ role: "user", content: "Hi" }], {
    addGenerationPrompt: true,
    extra: { enable_thinking: false },
  });
  assert.equal(out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
});

Deno.test("applyChatTemplate() renders qwen3 tools, tool calls and tool results", async () => {
  const tok = await fixture("qwen3");
  const tools = [{
    type: "function",
    function: {
      name: "get_weather",
      description: "Get weather",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  }];
  const messages: ChatMessage[] = [
    { role: "system", content: "Sys" },
    { role: "user", content: "Weather in Paris?" },
    {
      role: "assistant",
      content: null,
      tool_calls: [{ id: "call_1", type: "function", function: { name: "get_weather", arguments: { city: "Paris" } } }],
    },
    { role: "tool", content: '{"temp": 21}', tool_call_id: "call_1" },
  ];
  const expected = "<|im_start|>system\nSys\n\n# Tools\n\nYou may call one or more functions to assist with the user " +
    "query.\n\nYou are provided with function signatures within <tools></tools> XML tags:\n<tools>\n" +
    '{"type": "function", "function": {"name": "get_weather", "description": "Get weather", "parameters": ' +
    '{"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}' +
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within " +
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n' +
    "</tool_call><|im_end|>\n" +
    "<|im_start|>user\nWeather in Paris?<|im_end|>\n" +
    '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>' +
    "<|im_end|>\n" +
    '<|im_start|>user\n<tool_response>\n{"temp": 21}\n</tool_response><|im_end|>\n' +
    "<|im_start|>assistant\n";
  assert.equal(tok.applyChatTemplate(messages, { addGenerationPrompt: true, tools }), expected);
  // An empty tools list renders like no tools.
  assert.equal(
    tok.applyChatTemplate([{ role: "system", content: "Sys" }, { role: "user", content: "x" }], { tools: [] }),
    "<|im_start|>system\nSys<|im_end|>\n<|im_start|>user\nx<|im_end|>\n",
  );
});

Deno.test("applyChatTemplate() falls back to ChatML when the checkpoint has no template", async () => {
  const tok = await fixture("llama2");
  assert.equal(tok.hasChatTemplate, false);
  assert.equal(
    tok.applyChatTemplate([{ role: "system", content: "S" }, { role: "user", content: "U" }], {
      addGenerationPrompt: true,
    }),
    "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n",
  );
});

Deno.test("applyChatTemplate() joins text parts and renders null content as empty", () => {
  const tok = withTemplate("{% for m in messages %}[{{ m.role }}|{{ m.content }}]{% endfor %}");
  assert.equal(
    tok.applyChatTemplate([
      { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
      { role: "assistant", content: null },
    ]),
    "[user|a\nb][assistant|]",
  );
  assert.throws(
    () => tok.applyChatTemplate([{ role: "user", content: [{ type: "image_url" } as never] }]),
    (e) => e instanceof UserError && /content\[0\]/.test(e.message),
  );
});

Deno.test("applyChatTemplate() turns raise_exception into a UserError", () => {
  const tok = withTemplate(
    "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation must start with user') }}{% endif %}ok",
  );
  assert.equal(tok.applyChatTemplate([{ role: "user", content: "x" }]), "ok");
  assert.throws(
    () => tok.applyChatTemplate([{ role: "assistant", content: "x" }]),
    (e) => e instanceof UserError && e.message.includes("Conversation must start with user"),
  );
});

Deno.test("applyChatTemplate() provides strftime_now, bos_token, eos_token and range", () => {
  const tok = withTemplate("{{ bos_token }}|{{ eos_token }}|{{ strftime_now('%Y-%m-%d') }}|{{ range(3)|join(',') }}");
  const now = new Date();
  const day = `${now.getFullYear()}-${String(now.getMonth() + 1).padStart(2, "0")}-${
    String(now.getDate()).padStart(2, "0")
  }`;
  assert.equal(tok.applyChatTemplate([]), `<|bos|>|<|eos|>|${day}|0,1,2`);
});

Deno.test("strftime() formats like Python's C locale", () => {
  const d = new Date(2024, 6, 26, 9, 5, 3); // Friday 26 July 2024, day 208
  assert.equal(strftime(d, "%d %b %Y"), "26 Jul 2024");
  assert.equal(
    strftime(d, "%A %a %B %m/%d/%y %H:%M:%S %I%p %j %e %%"),
    "Friday Fri July 07/26/24 09:05:03 09AM 208 26 %",
  );
  assert.equal(strftime(new Date(2024, 0, 5, 13), "%I %p %j %e"), "01 PM 005  5");
});

Deno.test("applyChatTemplate() picks the tool_use template of a named template list", () => {
  const tok = withTemplate([
    { name: "default", template: "default:{{ messages|length }}" },
    { name: "tool_use", template: "tools:{{ tools|length }}" },
  ]);
  assert.equal(tok.applyChatTemplate([{ role: "user", content: "x" }]), "default:1");
  assert.equal(tok.applyChatTemplate([{ role: "user", content: "x" }], { tools: [{}, {}] }), "tools:2");
});

Deno.test("loadTokenizer() prefers chat_template.jinja over tokenizer_config's template", async () => {
  const dir = await Deno.makeTempDir({ prefix: "tok_jinja_" });
  try {
    await Deno.writeTextFile(`${dir}/tokenizer.json`, JSON.stringify(byteTokenizerJson()));
    await Deno.writeTextFile(`${dir}/tokenizer_config.json`, JSON.stringify(byteTokenizerConfig()));
    await Deno.writeTextFile(`${dir}/chat_template.jinja`, "{% for m in messages %}<{{ m.role }}>{% endfor %}");
    const tok = await loadTokenizer(dir);
    assert.ok(tok);
    assert.equal(
      tok.applyChatTemplate([{ role: "user", content: "x" }, { role: "assistant", content: "y" }]),
      "<user><assistant>",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
