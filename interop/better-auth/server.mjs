// The real Better Auth, for the API's interop tests
// (better_auth/tests/interop/).
//
//   DATABASE_URL=postgres://... node server.mjs '<config JSON>'
//
// The config names one or more Better Auth instances, all on the same
// PostgreSQL database:
//
//   {"instances": [{"name": "main", "secret": "...",
//                   "secureCookies": false,        // __Secure- cookie names
//                   "jwt": {"expirationTime": "15m"} | null,  // JWT plugin
//                   "jwks": {"keyPairConfig": {"alg": "ES256"}},  // its keys
//                   "jwksModel": "jwks"}]}          // the JWT plugin's table
//
// Each instance gets email and password sign-in and the bearer plugin, and
// serves Better Auth's own handler at <baseURL>/api/auth on an ephemeral
// port of 127.0.0.1. Better Auth's own migrations run first. Once every
// instance listens, one JSON line goes to stdout:
//
//   {"instances": {"main": "http://127.0.0.1:PORT", ...}}
//
// The process ends when its standard input closes or on SIGTERM.

import { createServer } from "node:http";

import { betterAuth } from "better-auth";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import { bearer, jwt } from "better-auth/plugins";
import pg from "pg";

function listen(server) {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });
}

function authOptions(instance, baseURL, pool) {
  const plugins = [bearer()];
  if (instance.jwt) {
    plugins.push(
      jwt({
        jwt: instance.jwt,
        jwks: instance.jwks,
        schema: { jwks: { modelName: instance.jwksModel ?? "jwks" } },
      }),
    );
  }
  return {
    baseURL,
    secret: instance.secret,
    database: pool,
    emailAndPassword: { enabled: true },
    plugins,
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
    advanced: { useSecureCookies: Boolean(instance.secureCookies) },
  };
}

async function main() {
  const config = JSON.parse(process.argv[2] ?? "{}");
  if (!process.env.DATABASE_URL) throw new Error("DATABASE_URL is not set");
  if (!config.instances?.length) throw new Error("no instances configured");

  const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL });
  const servers = [];
  const urls = {};
  for (const instance of config.instances) {
    const server = createServer();
    const port = await listen(server);
    const baseURL = `http://127.0.0.1:${port}`;
    const options = authOptions(instance, baseURL, pool);
    const { runMigrations } = await getMigrations(options);
    await runMigrations();
    server.on("request", toNodeHandler(betterAuth(options)));
    servers.push(server);
    urls[instance.name] = baseURL;
  }

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    for (const server of servers) {
      server.closeAllConnections();
      server.close();
    }
    await pool.end();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
  process.stdin.on("end", stop);
  process.stdin.on("close", stop);
  process.stdin.resume();

  process.stdout.write(`${JSON.stringify({ instances: urls })}\n`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
