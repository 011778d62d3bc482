// The GraphQL-over-HTTP conformance audit (`auditServer` of the `graphql-http` package,
// the GraphQL Foundation's reference implementation of the draft spec) against a running
// orders-api. Prints one JSON object: every audit with its id, level, status and reason.
//
//   node examples/node/audit.mjs http://127.0.0.1:8000/graphql
//
// Levels come from the audit names (MUST / SHOULD / MAY); statuses are graphql-http's:
// ok, warn (a SHOULD not met), notice (a MAY not taken), error (a MUST not met).
import { auditServer } from "graphql-http";

export async function audit(url) {
  const results = await auditServer({ url });
  return results.map(({ id, name, status, reason }) => ({
    id,
    level: name.split(" ", 1)[0],
    status,
    name,
    ...(status === "ok" ? {} : { reason }),
  }));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const url = process.argv[2] ?? "http://127.0.0.1:8000/graphql";
  const results = await audit(url);
  process.stdout.write(JSON.stringify({ url, results }, null, 2) + "\n");
}
