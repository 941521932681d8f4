// Runs node/audit/static/verify.js (the page's own checks) on the cases given on stdin and
// prints one line of JSON per case: {"ok": true} or {"ok": false, "error": "..."}.
import { readFileSync } from "node:fs";

const v = await import(process.argv[2]);
const cases = JSON.parse(readFileSync(0, "utf-8"));
const b = (x) => (x === null || x === undefined ? new Uint8Array() : v.b64decode(x));
const results = [];
for (const c of cases) {
  try {
    let value = null;
    if (c.kind === "inclusion") {
      await v.verifyInclusion(c.leafIdx, c.treeSize, b(c.leafHash), (c.proof || []).map(b), b(c.root));
    } else if (c.kind === "consistency") {
      await v.verifyConsistency(c.size1, c.size2, b(c.root1), b(c.root2), (c.proof || []).map(b));
    } else if (c.kind === "checkpoint") {
      const r = await v.verifyCheckpoint(c.note, c.log_key, c.witness_keys);
      value = { size: r.checkpoint.size, witnesses: r.witnesses };
    } else if (c.kind === "entry") {
      const r = await v.verifyEntry(c.detail, c.log_key, c.witness_keys);
      value = { fromBytes: r.fromBytes };
    }
    results.push({ ok: true, value });
  } catch (error) {
    results.push({ ok: false, error: String(error.message), verifyError: error instanceof v.VerifyError });
  }
}
process.stdout.write(JSON.stringify(results));
