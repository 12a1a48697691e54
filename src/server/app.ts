// The hono app: routes, bearer auth, CORS, OpenAI-style errors for everything (401/404/405/413/429/503 included).
import { Hono } from "hono";
import { cors } from "hono/cors";
import type { Context, Next } from "hono";
import { readJsonObject } from "./body.ts";
import { handleChatCompletions } from "./chat.ts";
import { handleCompletions } from "./completions.ts";
import type { ServerContext } from "./context.ts";
import { ApiError, badRequest, shuttingDown, toApiError } from "./errors.ts";
import { optString } from "./fields.ts";
import { METRICS_CONTENT_TYPE, renderMetrics } from "./metrics.ts";
import { handleDetokenize, handleTokenize } from "./tokenize.ts";

/** Routes anyone may call without the API key (load balancers and Prometheus). */
const OPEN_PATHS = new Set(["/health", "/metrics"]);

function sameSecret(a: string, b: string): boolean {
  const x = new TextEncoder().encode(a);
  const y = new TextEncoder().encode(b);
  let diff = x.length ^ y.length;
  for (let i = 0; i < Math.max(x.length, y.length); i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

function authMiddleware(ctx: ServerContext) {
  return async (c: Context, next: Next) => {
    if (ctx.apiKey === null || OPEN_PATHS.has(c.req.path) || c.req.method === "OPTIONS") return await next();
    const header = c.req.header("authorization") ?? "";
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!m || !sameSecret(m[1]!.trim(), ctx.apiKey)) {
      const message = m
        ? "Incorrect API key provided."
        : "You didn't provide an API key. Send it in an Authorization header: Bearer YOUR_KEY.";
      throw new ApiError(401, message, "invalid_request_error", null, "invalid_api_key", {
        "WWW-Authenticate": "Bearer",
      });
    }
    await next();
  };
}

function modelCard(ctx: ServerContext) {
  return {
    id: ctx.modelName,
    object: "model",
    created: ctx.created,
    owned_by: "turbodeno",
    root: ctx.modelRoot,
    parent: null,
    max_model_len: ctx.engine.maxModelLen,
    ...(ctx.description ? { description: ctx.description } : {}),
  };
}

const ROUTES: Record<string, string> = {
  "/health": "GET",
  "/metrics": "GET",
  "/v1/models": "GET",
  "/v1/models/:model": "GET",
  "/v1/chat/completions": "POST",
  "/v1/completions": "POST",
  "/tokenize": "POST",
  "/detokenize": "POST",
  "/abort": "POST",
};

export function createApp(ctx: ServerContext): Hono {
  const app = new Hono();
  app.onError((err) => toApiError(err).response());
  app.notFound((c) =>
    new ApiError(404, `no route for ${c.req.method} ${c.req.path}`, "invalid_request_error", null, "not_found")
      .response()
  );
  if (ctx.corsOrigins.length > 0) {
    app.use(
      "*",
      cors({
        origin: ctx.corsOrigins.includes("*") ? "*" : [...ctx.corsOrigins],
        allowMethods: ["GET", "POST", "OPTIONS"],
        allowHeaders: ["Authorization", "Content-Type"],
        maxAge: 600,
      }),
    );
  }
  app.use("*", authMiddleware(ctx));
  app.use("*", async (c, next) => {
    // While shutting down: no new work, but health, metrics and aborting in-flight requests still answer.
    if (ctx.closing && !OPEN_PATHS.has(c.req.path) && c.req.path !== "/abort") throw shuttingDown();
    await next();
  });

  app.get("/health", () => ctx.closing ? shuttingDown().response() : Response.json({ status: "ok" }));
  app.get("/metrics", () => new Response(renderMetrics(ctx), { headers: { "content-type": METRICS_CONTENT_TYPE } }));
  app.get("/v1/models", () => Response.json({ object: "list", data: [modelCard(ctx)] }));
  app.get("/v1/models/:model", (c) => {
    const id = decodeURIComponent(c.req.param("model"));
    if (id !== ctx.modelName) {
      throw new ApiError(
        404,
        `The model \`${id}\` does not exist.`,
        "invalid_request_error",
        "model",
        "model_not_found",
      );
    }
    return Response.json(modelCard(ctx));
  });
  app.post("/v1/chat/completions", (c) => handleChatCompletions(ctx, c.req.raw));
  app.post("/v1/completions", (c) => handleCompletions(ctx, c.req.raw));
  app.post("/tokenize", (c) => handleTokenize(ctx, c.req.raw));
  app.post("/detokenize", (c) => handleDetokenize(ctx, c.req.raw));
  app.post("/abort", async (c) => {
    const body = await readJsonObject(c.req.raw, ctx.maxBodyBytes);
    const id = optString(body, "request_id");
    if (id === undefined) throw badRequest("request_id is required", "request_id");
    if (!ctx.active.abort(id)) {
      throw new ApiError(404, `no running request ${id}`, "invalid_request_error", "request_id", "request_not_found");
    }
    return Response.json({ id, aborted: true });
  });

  for (const [path, method] of Object.entries(ROUTES)) {
    app.all(path, (c) =>
      new ApiError(
        405,
        `${c.req.method} is not allowed on ${c.req.path}; use ${method}`,
        "invalid_request_error",
        null,
        "method_not_allowed",
        { Allow: method },
      ).response());
  }
  return app;
}
