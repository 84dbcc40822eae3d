// node:crypto with hash(algorithm, data, outputEncoding = 'hex') for Nodes
// that lack it (see node_compat.mjs); 'buffer' returns a Buffer, as Node's.
import crypto from 'node:crypto';

export * from 'node:crypto';
export default crypto;
export function hash(algorithm, data, outputEncoding = 'hex') {
  const digest = crypto.createHash(algorithm).update(data);
  return outputEncoding === 'buffer' ? digest.digest() : digest.digest(outputEncoding);
}
