// What the auditor page checks itself, with WebCrypto alone (SHA-256, Ed25519): RFC 9162
// inclusion and consistency proofs, C2SP signed notes and tlog-checkpoints, and C2SP
// tlog-cosignature/v1 witness cosignatures. Pure functions over bytes and text, the same
// rules as node/log/merkle.py and node/log/notes.py; the suite runs them against the same
// vectors (tests/audit/test_page_verify.py). Every failure throws a VerifyError.

export class VerifyError extends Error {}

const HASH_SIZE = 32;
const enc = new TextEncoder();
const subtle = globalThis.crypto.subtle;

export function b64decode(text) {
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) {
    throw new VerifyError("not standard base64");
  }
  const raw = atob(text);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

export function b64encode(bytes) {
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export async function sha256(bytes) {
  return new Uint8Array(await subtle.digest("SHA-256", bytes));
}

// RFC 9162 §2.1.1: leaf = SHA-256(0x00 || entry), node = SHA-256(0x01 || left || right).
export async function leafHash(entry) {
  return sha256(concat(Uint8Array.of(0), entry));
}

export async function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

function checkLength(value, what) {
  if (!(value instanceof Uint8Array) || value.length !== HASH_SIZE) {
    throw new VerifyError(`${what} must be ${HASH_SIZE} bytes`);
  }
}

// RFC 9162 §2.1.3.2. Sizes are JS numbers: exact up to 2^53 entries.
export async function verifyInclusion(index, treeSize, leaf, proof, root) {
  checkLength(root, "root hash");
  // Step 1.
  if (!(index >= 0 && index < treeSize)) throw new VerifyError("leaf index outside the tree");
  checkLength(leaf, "leaf hash");
  proof.forEach((p, i) => checkLength(p, `proof hash ${i}`));
  // Steps 2-3.
  let fn = index;
  let sn = treeSize - 1;
  let r = leaf;
  // Step 4.
  for (const p of proof) {
    if (sn === 0) throw new VerifyError("inclusion proof longer than the path to the root");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn !== 0 && fn % 2 === 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 5.
  if (sn !== 0) throw new VerifyError("inclusion proof too short to reach the root");
  if (!equal(r, root)) throw new VerifyError("inclusion proof leads to another root");
}

// RFC 9162 §2.1.4.2 (a proof from size 0 proves nothing, as on the Python side).
export async function verifyConsistency(size1, size2, root1, root2, proof) {
  if (size1 > size2) throw new VerifyError("old size larger than new size");
  if (size1 === 0) throw new VerifyError("a proof from the empty tree proves nothing");
  if (size1 === size2) {
    if (proof.length) throw new VerifyError("proof between equal sizes must be empty");
    if (!equal(root1, root2)) throw new VerifyError("two roots for one tree size");
    return;
  }
  checkLength(root1, "old root");
  checkLength(root2, "new root");
  proof.forEach((p, i) => checkLength(p, `proof hash ${i}`));
  // Step 1.
  if (!proof.length) throw new VerifyError("empty consistency proof");
  // Step 2.
  const path = 2 ** Math.round(Math.log2(size1)) === size1 ? [root1, ...proof] : [...proof];
  // Step 3.
  let fn = size1 - 1;
  let sn = size2 - 1;
  // Step 4.
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 5.
  let fr = path[0];
  let sr = path[0];
  // Step 6.
  for (const c of path.slice(1)) {
    if (sn === 0) throw new VerifyError("consistency proof longer than the path");
    if (fn % 2 === 1 || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      while (fn !== 0 && fn % 2 === 0) {
        fn = Math.floor(fn / 2);
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  // Step 7.
  if (sn !== 0) throw new VerifyError("consistency proof too short");
  if (!equal(fr, root1)) throw new VerifyError("consistency proof leads to another old root");
  if (!equal(sr, root2)) throw new VerifyError("consistency proof leads to another new root");
}

// --- C2SP signed notes ------------------------------------------------------------------------

export const SIG_ED25519 = 0x01;
export const SIG_COSIGNATURE_V1 = 0x04;
const SIG_PREFIX = "\u2014 ";

function validKeyName(name) {
  return name.length > 0 && !name.includes("+") && !/\s/.test(name) && !/[\x00-\x1f]/.test(name);
}

// signed-note: key ID = SHA-256(name || 0x0A || type || public key)[:4].
export async function keyHash(name, type, publicKey) {
  return (await sha256(concat(enc.encode(name + "\n"), Uint8Array.of(type), publicKey))).slice(0, 4);
}

// A verifier key: <name>+<8 hex key ID>+<base64(type || 32-byte Ed25519 key)>.
export async function parseVerifierKey(text) {
  const first = text.indexOf("+");
  const second = text.indexOf("+", first + 1);
  if (first < 0 || second < 0) throw new VerifyError("verifier key is not name+hash+key");
  const name = text.slice(0, first);
  const hashHex = text.slice(first + 1, second);
  const raw = b64decode(text.slice(second + 1));
  if (!validKeyName(name) || !/^[0-9a-f]{8}$/.test(hashHex) || raw.length !== 33) {
    throw new VerifyError("malformed verifier key");
  }
  const type = raw[0];
  if (type !== SIG_ED25519 && type !== SIG_COSIGNATURE_V1) {
    throw new VerifyError("unsupported signature type");
  }
  const publicKey = raw.slice(1);
  const id = await keyHash(name, type, publicKey);
  if (hex(id) !== hashHex) throw new VerifyError("verifier key's ID does not match its key");
  const key = await subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
  return { name, type, id, key, text };
}

// signed-note §Format: text ending in newline, a blank line, then "— name base64" lines.
export function splitNote(note) {
  if (/[\x00-\x09\x0b-\x1f]/.test(note)) throw new VerifyError("control character in note");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) throw new VerifyError("note has no signature block");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) throw new VerifyError("signature lines must end in newline");
  const signatures = block
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      if (!line.startsWith(SIG_PREFIX)) throw new VerifyError("bad signature line");
      const rest = line.slice(SIG_PREFIX.length);
      const space = rest.indexOf(" ");
      if (space <= 0) throw new VerifyError("bad signature line");
      const name = rest.slice(0, space);
      const raw = b64decode(rest.slice(space + 1));
      if (!validKeyName(name) || raw.length < 5) throw new VerifyError("bad signature line");
      return { name, id: raw.slice(0, 4), signature: raw.slice(4), line };
    });
  return { text, signatures };
}

// tlog-checkpoint §Note text: origin, decimal size, base64 root, extension lines.
export function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split("\n");
  if (!text.endsWith("\n") || lines.length < 3) throw new VerifyError("not a checkpoint");
  const [origin, size, root] = lines;
  if (!/^(0|[1-9][0-9]*)$/.test(size)) throw new VerifyError("checkpoint size is not decimal");
  const rootHash = b64decode(root);
  checkLength(rootHash, "checkpoint root");
  return { origin, size: Number(size), root: rootHash };
}

async function ed25519(key, signature, message) {
  if (signature.length !== 64) return false;
  return subtle.verify({ name: "Ed25519" }, key, signature, message);
}

// tlog-cosignature §Signed message: header, time line, the whole checkpoint body.
export function cosignatureMessage(body, timestamp) {
  return enc.encode(`cosignature/v1\ntime ${timestamp}\n${body}`);
}

async function verifySignature(verifier, text, signature) {
  if (verifier.type === SIG_COSIGNATURE_V1) {
    if (signature.length !== 72) throw new VerifyError(`cosignature by ${verifier.name} is malformed`);
    const timestamp = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0);
    if (timestamp > 2n ** 63n - 1n) throw new VerifyError("cosignature time above 2^63-1");
    if (!(await ed25519(verifier.key, signature.slice(8), cosignatureMessage(text, timestamp)))) {
      throw new VerifyError(`cosignature by ${verifier.name} does not verify`);
    }
    return Number(timestamp);
  }
  if (!(await ed25519(verifier.key, signature, enc.encode(text)))) {
    throw new VerifyError(`signature by ${verifier.name} does not verify`);
  }
  return null;
}

// A checkpoint note: the pinned log key MUST have signed it and its origin must be the key's
// name; each witness key that signed is checked too. Returns the checkpoint and, per witness
// key given, whether it cosigned (and when) — a witness whose line fails throws.
export async function verifyCheckpoint(note, logKeyText, witnessKeyTexts = []) {
  const logKey = await parseVerifierKey(logKeyText);
  if (logKey.type !== SIG_ED25519) throw new VerifyError("the log key must be an Ed25519 note key");
  const witnesses = [];
  for (const text of witnessKeyTexts) witnesses.push(await parseVerifierKey(text));
  const { text, signatures } = splitNote(note);
  let logSigned = false;
  const cosigned = new Map();
  for (const sig of signatures) {
    if (sig.name === logKey.name && equal(sig.id, logKey.id)) {
      await verifySignature(logKey, text, sig.signature);
      logSigned = true;
      continue;
    }
    const witness = witnesses.find((w) => w.name === sig.name && equal(w.id, sig.id));
    if (witness && witness.type === SIG_COSIGNATURE_V1 && !cosigned.has(witness.name)) {
      cosigned.set(witness.name, await verifySignature(witness, text, sig.signature));
    }
  }
  if (!logSigned) throw new VerifyError("checkpoint is not signed by the pinned log key");
  const checkpoint = parseCheckpoint(text);
  if (checkpoint.origin !== logKey.name) throw new VerifyError("checkpoint origin is not the log");
  return {
    checkpoint,
    text,
    witnesses: witnesses.map((w) => ({
      name: w.name,
      cosigned: cosigned.has(w.name),
      timestamp: cosigned.get(w.name) ?? null,
    })),
  };
}

// An entry as the page shows it proven: its leaf hash (computed from its bytes when the page
// has them), included in the checkpoint the pinned key signed.
export async function verifyEntry(detail, logKeyText, witnessKeyTexts) {
  const verified = await verifyCheckpoint(detail.checkpoint, logKeyText, witnessKeyTexts);
  let leaf = b64decode(detail.leaf_hash);
  const fromBytes = detail.data !== null && detail.data !== undefined;
  if (fromBytes) {
    const computed = await leafHash(b64decode(detail.data));
    if (!equal(computed, leaf)) throw new VerifyError("the entry's bytes do not hash to its leaf");
    leaf = computed;
  }
  if (detail.proof.tree_size !== verified.checkpoint.size) {
    throw new VerifyError("the proof is for another tree size than the checkpoint");
  }
  await verifyInclusion(
    detail.proof.index,
    detail.proof.tree_size,
    leaf,
    detail.proof.hashes.map(b64decode),
    verified.checkpoint.root,
  );
  return { ...verified, fromBytes };
}
