// Token exchange (RFC 8693) for the oidc peer: the grant
// urn:ietf:params:oauth:grant-type:token-exchange, registered with
// oidc-provider's custom grant API (provider.registerGrantType).
//
// The subject token (and the actor token, when given) must be an access
// token this provider issued and that is still valid (access or client
// credentials token); token types other than access_token are refused
// (invalid_request). The new token is an opaque access token for the
// subject's account (a client credentials subject gives a client
// credentials token), of the exchanging client:
//   scope     a subset of the subject's scope (else invalid_scope); default
//             the subject's scope
//   resource  RESOURCE or urn:connkit:api (else invalid_target)
//   audience  one of AUDIENCES below (else invalid_target); "echo" is
//             refused with the subject token quoted in error_description (a
//             server that misbehaves: connkit must scrub it)
//   requested_token_type  access_token or absent (else invalid_request)
// Its lifetime is the peer's access_ttl; no refresh token is issued,
// except with scope offline_access in the request (then one is, bound to
// the subject's grant), so specs can cover both cases.
//
// Clients: exchange-client (client_secret_basic), exchange-post-client
// (client_secret_post); both may also use authorization_code,
// refresh_token and client_credentials.
//
// For the specs, GET /test/stats carries `exchange`: { total, ok, error,
// requests: [...] } where each request lists what the grant received
// without secrets: parameter names, the token types, audience, resource,
// scope, sha256 of the subject and actor tokens, sha256 of the issued
// token, the error if any.
import crypto from 'node:crypto';
import { errors } from 'oidc-provider';

export const GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const TT = 'urn:ietf:params:oauth:token-type:';
const AUDIENCES = new Set(['connkit-api', 'urn:connkit:api']);

const sha256 = (s) => crypto.createHash('sha256').update(String(s)).digest('hex');
const list = (v) => (v === undefined ? [] : (Array.isArray(v) ? v : [v]));

export default function exchange(env) {
  const { RESOURCE, WEB_REDIRECTS } = env;
  const { InvalidRequest, InvalidTarget, InvalidScope } = errors;
  const grants = ['authorization_code', 'refresh_token', 'client_credentials', GRANT];
  const clients = [
    {
      client_id: 'exchange-client',
      client_secret: 'xch:s3cret/+ %',
      token_endpoint_auth_method: 'client_secret_basic',
      grant_types: grants,
      response_types: ['code'],
      redirect_uris: WEB_REDIRECTS,
    },
    {
      client_id: 'exchange-post-client',
      client_secret: 'xchpost:s3cret&=',
      token_endpoint_auth_method: 'client_secret_post',
      grant_types: grants,
      response_types: ['code'],
      redirect_uris: WEB_REDIRECTS,
    },
  ];

  function stats() {
    const s = env.stats();
    if (!s.exchange) s.exchange = { total: 0, ok: 0, error: 0, requests: [] };
    return s.exchange;
  }

  async function subject(provider, value, type, name) {
    if (!value) throw new InvalidRequest(`missing ${name}`);
    if (type !== `${TT}access_token`) throw new InvalidRequest(`${name}_type ${type} is not supported here`);
    const found = await env.findToken(value);
    if (!found) throw new InvalidRequest(`${name} is invalid, expired or revoked`);
    return found;
  }

  async function handler(ctx) {
    const { provider } = ctx.oidc;
    const p = ctx.oidc.params;
    const rec = {
      params: Object.keys(p).filter((k) => p[k] !== undefined).sort(),
      client_id: ctx.oidc.client.clientId,
      subject_token_type: p.subject_token_type,
      actor_token_type: p.actor_token_type,
      requested_token_type: p.requested_token_type,
      audience: p.audience,
      resource: p.resource,
      scope: p.scope,
      subject_token_sha256: p.subject_token ? sha256(p.subject_token) : undefined,
      actor_token_sha256: p.actor_token ? sha256(p.actor_token) : undefined,
    };
    const st = stats();
    st.total += 1;
    st.requests.push(rec);
    if (st.requests.length > 200) st.requests.shift();
    try {
      const sub = await subject(provider, p.subject_token, p.subject_token_type, 'subject_token');
      if (p.actor_token !== undefined || p.actor_token_type !== undefined) {
        if (p.actor_token_type === undefined) throw new InvalidRequest('actor_token_type is required with actor_token');
        await subject(provider, p.actor_token, p.actor_token_type, 'actor_token');
      }
      if (p.requested_token_type !== undefined && p.requested_token_type !== `${TT}access_token`) {
        throw new InvalidRequest(`requested_token_type ${p.requested_token_type} is not supported here`);
      }
      for (const a of list(p.audience)) {
        // a misbehaving server for the specs: its message quotes the subject token
        if (a === 'echo') throw new InvalidTarget(`unknown audience echo for subject_token ${p.subject_token}`);
        if (!AUDIENCES.has(a)) throw new InvalidTarget(`unknown audience ${a}`);
      }
      const resources = list(p.resource);
      for (const r of resources) {
        if (r !== RESOURCE && r !== 'urn:connkit:api') throw new InvalidTarget(`unknown resource ${r}`);
      }
      const had = new Set(String(sub.token.scope || '').split(' ').filter(Boolean));
      const wanted = p.scope ? String(p.scope).split(' ').filter(Boolean) : [...had];
      const offline = wanted.includes('offline_access');
      const scopes = wanted.filter((s) => s !== 'offline_access');
      for (const s of scopes) {
        if (!had.has(s)) throw new InvalidScope(`scope ${s} is not in the subject token`, s);
      }
      const t = sub.token;
      const Model = sub.kind === 'access_token' ? provider.AccessToken : provider.ClientCredentials;
      const at = sub.kind === 'access_token'
        ? new Model({ accountId: t.accountId, grantId: t.grantId, client: ctx.oidc.client, gty: 'token-exchange' })
        : new Model({ client: ctx.oidc.client });
      at.scope = scopes.join(' ') || undefined;
      const aud = [...list(p.audience), ...resources];
      if (aud.length) at.extra = { aud, act: p.actor_token ? { sub: ctx.oidc.client.clientId } : undefined };
      const value = await at.save();
      let refresh;
      if (offline && sub.kind === 'access_token') {
        const rt = new provider.RefreshToken({
          accountId: t.accountId, grantId: t.grantId, client: ctx.oidc.client, gty: 'token-exchange',
          scope: at.scope, rotations: 0, iiat: Math.floor(Date.now() / 1000),
        });
        refresh = await rt.save();
      }
      ctx.body = {
        access_token: value,
        issued_token_type: `${TT}access_token`,
        token_type: 'Bearer',
        expires_in: at.expiration,
        scope: at.scope,
        refresh_token: refresh,
      };
      rec.issued_token_sha256 = sha256(value);
      rec.issued_refresh_token = refresh !== undefined;
      rec.status = 200;
      st.ok += 1;
    } catch (err) {
      rec.status = err.statusCode || 500;
      rec.error = err.error || 'server_error';
      st.error += 1;
      throw err;
    }
  }

  return {
    clients,
    setup(provider) {
      provider.registerGrantType(GRANT, handler, [
        'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type',
        'requested_token_type', 'audience', 'resource', 'scope',
      ], ['audience', 'resource']);
    },
  };
}
