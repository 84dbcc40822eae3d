// JWS cross-checks with node's crypto (spec/jwt_spec.lua): an implementation
// independent of connkit's C (node has its own JWK import and ECDSA
// signature encoding).
//   node jws_node.js sign ALG KEYFILE DATAFILE        -> base64url signature
//   node jws_node.js verify ALG KEYFILE DATAFILE SIG  -> "ok" | "bad"
//   node jws_node.js jwk PEMFILE                      -> the public JWK (JSON)
//   node jws_node.js pem JWKFILE                      -> the SPKI PEM of a JWK
// For HS256 KEYFILE holds the secret. SIG is base64url (ES256: r || s).
'use strict';
const crypto = require('crypto');
const fs = require('fs');

const [cmd, a, b, c, d] = process.argv.slice(2);

function options(alg, key) {
  switch (alg) {
    case 'RS256': return { hash: 'sha256', key: { key } };
    case 'PS256': return { hash: 'sha256', key: { key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } };
    case 'ES256': return { hash: 'sha256', key: { key, dsaEncoding: 'ieee-p1363' } };
    case 'EdDSA': return { hash: null, key: { key } };
    default: throw new Error('alg ' + alg);
  }
}

if (cmd === 'sign' || cmd === 'verify') {
  const keyText = fs.readFileSync(b);
  const data = fs.readFileSync(c);
  if (a === 'HS256') {
    const mac = crypto.createHmac('sha256', keyText).update(data).digest();
    if (cmd === 'sign') process.stdout.write(mac.toString('base64url'));
    else process.stdout.write(crypto.timingSafeEqual(mac, Buffer.from(d, 'base64url')) ? 'ok' : 'bad');
  } else {
    const o = options(a, keyText.toString());
    if (cmd === 'sign') {
      process.stdout.write(crypto.sign(o.hash, data, o.key).toString('base64url'));
    } else {
      o.key.key = crypto.createPublicKey(keyText.toString());
      process.stdout.write(crypto.verify(o.hash, data, o.key, Buffer.from(d, 'base64url')) ? 'ok' : 'bad');
    }
  }
} else if (cmd === 'jwk') {
  process.stdout.write(JSON.stringify(crypto.createPublicKey(fs.readFileSync(a, 'utf8')).export({ format: 'jwk' })));
} else if (cmd === 'pem') {
  const jwk = JSON.parse(fs.readFileSync(a, 'utf8'));
  process.stdout.write(crypto.createPublicKey({ key: jwk, format: 'jwk' }).export({ type: 'spki', format: 'pem' }));
} else {
  throw new Error('usage');
}
