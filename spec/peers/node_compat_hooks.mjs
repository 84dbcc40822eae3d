// Module resolution hooks registered by node_compat.mjs on a Node without
// crypto.hash: every import of node:crypto, except the shim's own, gets
// node_compat_crypto.mjs.
const shim = new URL('./node_compat_crypto.mjs', import.meta.url).href;

export async function resolve(specifier, context, next) {
  if ((specifier === 'node:crypto' || specifier === 'crypto') && context.parentURL !== shim) {
    return { url: shim, shortCircuit: true };
  }
  return next(specifier, context);
}
