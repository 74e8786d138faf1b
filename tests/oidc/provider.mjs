// A real OpenID provider (node-oidc-provider) for portcullis end-to-end tests.
//
//   node tests/oidc/provider.mjs CONFIG.json [PORT]
//
// Listens on 127.0.0.1 (port 0 = any free port unless PORT or config.port is
// given), prints exactly one line `{"issuer":"http://127.0.0.1:PORT"}` on
// stdout once it is listening, and logs everything else to stderr.
// With `cognitoPool` it looks like a Cognito user pool reached through an
// `endpoint_url` instead, and the line is
// `{"issuer":"http://127.0.0.1:PORT/{pool}","endpoint_url":"http://127.0.0.1:PORT"}`.
// See README.md beside this file for the configuration schema.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const log = (...args) => console.error('[oidc]', ...args);

// ---------------------------------------------------------------- config ---

const configPath = process.argv[2];
const config = configPath ? JSON.parse(readFileSync(configPath, 'utf8')) : {};
const port = Number(process.argv[3] ?? config.port ?? 0);

const accessTokenTtl = config.accessTokenTtl ?? 3600;
const idTokenTtl = config.idTokenTtl ?? 3600;
const refreshTokenTtl = config.refreshTokenTtl ?? 14 * 24 * 3600;
// oidc-provider accepts tokens up to clockTolerance seconds past their exp
// (default 15); same clock here, so 0 makes expiry tests exact.
const clockTolerance = config.clockTolerance ?? 0;
// cognitoPool: a user pool id (`eu-west-1_AbC123`). The provider then looks
// like that pool behind an emulator's endpoint_url: issuer
// `{origin}/{pool}`, hosted UI at the root (/oauth2/authorize, /oauth2/token,
// /oauth2/userInfo, /oauth2/revoke, /logout), JWKS and discovery under
// `{issuer}/.well-known/`. Its other defaults follow Cognito: no consent
// page, a refresh token with every code grant, Cognito claims on, string
// booleans, every attribute released with the openid scope.
const cognitoPool = config.cognitoPool ?? null;
// apiResource: `{ "resource": "https://api.example", "scope": "orders:read" }`
// turns on the client_credentials grant for every client, issuing JWT
// access tokens (RS256, aud = resource) for that resource and scopes.
const apiResource = config.apiResource ?? null;
if (cognitoPool !== null && !/^[\w-]+_[0-9A-Za-z]+$/.test(cognitoPool)) {
  console.error(`[oidc] cognitoPool ${JSON.stringify(cognitoPool)} is not a pool id like eu-west-1_AbC123`);
  process.exit(2);
}
const issueRefreshTokenAlways = config.issueRefreshToken ?? cognitoPool !== null;
const requirePkce = config.requirePkce ?? true;
const skipConsent = config.skipConsent ?? cognitoPool !== null;
const bigClaims = config.bigClaims ?? 0;
// backchannelLogout: OpenID Connect Back-Channel Logout 1.0. A client with a
// `backchannel_logout_uri` gets a logout token POSTed there when the user
// ends the session at the end_session endpoint.
const backchannelLogout = config.backchannelLogout ?? false;
// issuerHost: the host name in the issuer (and so in every token's iss)
// instead of 127.0.0.1, e.g. `localhost`: the name browsers use in a
// split-horizon setup, while the relying party may call 127.0.0.1. The
// server still listens on 127.0.0.1 only.
const issuerHost = config.issuerHost ?? '127.0.0.1';
const cognitoClaims = config.cognito ?? cognitoPool !== null;
const cognito = cognitoClaims
  ? { username: 'alice', groups: ['admins', 'users'], ...(cognitoClaims === true ? {} : cognitoClaims) }
  : null;

// Cognito's paths, relative to the origin (the hosted UI and the issuer
// share the emulator's origin). Discovery has no route setting in
// oidc-provider: the server rewrites `/{pool}/.well-known/openid-configuration`
// to its root one, and answers 404 at the root as Cognito would.
const cognitoRoutes = cognitoPool === null ? null : {
  authorization: '/oauth2/authorize',
  token: '/oauth2/token',
  userinfo: '/oauth2/userInfo',
  revocation: '/oauth2/revoke',
  jwks: `/${cognitoPool}/.well-known/jwks.json`,
};
const tokenPath = cognitoRoutes?.token ?? '/token';
const DISCOVERY = '/.well-known/openid-configuration';

// Client authentication methods advertised in discovery and enforced at the
// token endpoint (oidc-provider itself accepts basic and post alike).
const authMethods = config.tokenEndpointAuthMethods ?? null;

const configuredClients = config.clients ?? [{
  client_id: 'portcullis',
  client_secret: 'portcullis-secret',
  redirect_uris: ['https://localhost/oauth2/idpresponse'],
}];

// cognitoPool: each client's sign-out URLs (Cognito's LogoutURLs), for
// /logout. Given as `logout_urls` or `post_logout_redirect_uris`; kept here
// because oidc-provider drops the latter with rpInitiatedLogout off.
const signOutUrls = new Map(configuredClients.map((c) => [
  c.client_id, [...(c.logout_urls ?? []), ...(c.post_logout_redirect_uris ?? [])],
]));

const clients = configuredClients.map(({ logout_urls: _, ...c }) => ({
  grant_types: ['authorization_code', 'refresh_token',
    ...(apiResource ? ['client_credentials'] : [])],
  response_types: ['code'],
  token_endpoint_auth_method: authMethods ? authMethods[0] : 'client_secret_basic',
  id_token_signed_response_alg: 'RS256',
  post_logout_redirect_uris: [],
  ...c,
}));
if (cognitoPool !== null) {
  for (const c of clients) delete c.post_logout_redirect_uris;
}

// The test user. Any login name is accepted by the login form (the password
// is ignored); `alice` gets the configured claims, any other name gets
// generic ones derived from the name.
const aliceClaims = {
  email: 'alice@example.test',
  email_verified: true,
  name: 'Alice Example',
  given_name: 'Alice',
  family_name: 'Example',
  preferred_username: 'alice',
  ...(config.claims ?? {}),
};

// Deterministic, incompressible-looking text (base64url alphabet) so cookie
// sharding tests cannot be defeated by compression and are reproducible.
function filler(size, seed) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  let x = seed >>> 0 || 1;
  let out = '';
  for (let i = 0; i < size; i += 1) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    out += alphabet[x & 63];
  }
  return out;
}

// bigClaims: total size in bytes of the values of claims big_0, big_1, …
// (each at most 1000 bytes), released in userinfo only.
const BIG_CHUNK = 1000;
const big = {};
for (let i = 0, left = bigClaims; left > 0; i += 1, left -= BIG_CHUNK) {
  big[`big_${i}`] = filler(Math.min(BIG_CHUNK, left), 0x9e3779b9 + i);
}

function claimsFor(accountId, use) {
  const base = accountId === 'alice'
    ? { ...aliceClaims }
    : {
      email: `${accountId}@example.test`,
      email_verified: true,
      name: accountId,
      preferred_username: accountId,
    };
  const out = { sub: accountId, ...base };
  if (use === 'userinfo') Object.assign(out, big);
  if (cognito) {
    out['cognito:username'] = accountId === 'alice' ? cognito.username : accountId;
    out['cognito:groups'] = cognito.groups;
    if (use === 'id_token') out.token_use = 'id';
  }
  if (cognitoPool !== null) {
    // Cognito writes its boolean attributes as strings, in the ID token and
    // in userinfo alike.
    for (const [key, value] of Object.entries(out)) {
      if (typeof value === 'boolean') out[key] = String(value);
    }
  }
  return out;
}

// Every claim we may return must be listed under some scope, or
// oidc-provider filters it out. Standard ones under their scopes, the rest
// (custom claims, big_*, cognito:*) under openid so they always flow.
const emailClaims = ['email', 'email_verified'];
const profileClaims = ['name', 'given_name', 'family_name', 'middle_name', 'nickname',
  'preferred_username', 'profile', 'picture', 'website', 'gender', 'birthdate',
  'zoneinfo', 'locale', 'updated_at'];
const known = new Set(['sub', ...emailClaims, ...profileClaims]);
const extraClaims = [...new Set([
  ...Object.keys(aliceClaims),
  ...Object.keys(big),
  ...(cognito ? ['cognito:username', 'cognito:groups', 'token_use'] : []),
])].filter((c) => !known.has(c));

// ------------------------------------------------------------------ keys ---

function signingKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  return {
    keys: [
      { ...rsa, kid: `rsa-${randomUUID()}`, use: 'sig', alg: 'RS256' },
      { ...ec, kid: `ec-${randomUUID()}`, use: 'sig', alg: 'ES256' },
    ],
  };
}

// ----------------------------------------------------------------- stats ---

const stats = {
  grants: { authorization_code: 0, refresh_token: 0 },
  grant_errors: 0,
  userinfo: 0,
  userinfo_errors: 0,
  authorizations: 0,
  authorization_errors: 0,
  end_sessions: 0,
  // backchannelLogout only: logout tokens the client answered 200 (or 204), or not.
  backchannel_logouts: 0,
  backchannel_logout_errors: 0,
  // cognitoPool only: answers of Cognito's /logout, and the query of the last one.
  logouts: 0,
  last_logout: null,
  // Requests that reached the discovery document.
  discoveries: 0,
};

// ---------------------------------------------------------------- server ---

const server = createServer();
server.listen(port, '127.0.0.1', () => {
  // The Provider is built once listening, so even port 0 gives an issuer
  // with the real port.
  const origin = `http://${issuerHost}:${server.address().port}`;
  const issuer = cognitoPool === null ? origin : `${origin}/${cognitoPool}`;

  const provider = new Provider(issuer, {
    clients,
    jwks: signingKeys(),
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    claims: {
      // Cognito releases every attribute the client may read with openid alone.
      openid: ['sub', ...extraClaims, ...(cognitoPool === null ? [] : [...emailClaims, ...profileClaims])],
      email: emailClaims,
      profile: profileClaims,
    },
    ...(cognitoRoutes ? { routes: cognitoRoutes } : {}),
    conformIdTokenClaims: false,
    clockTolerance,
    ...(authMethods ? { clientAuthMethods: authMethods } : {}),
    pkce: { required: () => requirePkce },
    features: {
      devInteractions: { enabled: true },
      // Cognito has no end_session_endpoint: its /logout is below.
      rpInitiatedLogout: { enabled: cognitoPool === null },
      userinfo: { enabled: true },
      revocation: { enabled: true },
      backchannelLogout: { enabled: backchannelLogout },
      clientCredentials: { enabled: apiResource !== null },
      ...(apiResource ? {
        resourceIndicators: {
          enabled: true,
          defaultResource: () => apiResource.resource,
          useGrantedResource: () => true,
          getResourceServerInfo: () => ({
            scope: apiResource.scope ?? '',
            audience: apiResource.resource,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          }),
        },
      } : {}),
    },
    // oidc-provider refuses to send logout tokens to loopback addresses (its
    // SSRF protection); the relying party under test is on the loopback.
    ...(backchannelLogout ? {
      fetch: (url, { dispatcher: _, ...options }) => globalThis.fetch(url, options),
    } : {}),
    async issueRefreshToken(ctx, client, code) {
      if (!client.grantTypeAllowed('refresh_token')) return false;
      return issueRefreshTokenAlways || code.scopes.has('offline_access');
    },
    // With skipConsent, the consent prompt is answered automatically by
    // creating a grant for everything asked.
    ...(skipConsent ? {
      async loadExistingGrant(ctx) {
        const grantId = ctx.oidc.result?.consent?.grantId
          || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
        if (grantId) {
          const existing = await ctx.oidc.provider.Grant.find(grantId);
          if (existing) return existing;
        }
        const grant = new ctx.oidc.provider.Grant({
          clientId: ctx.oidc.client.clientId,
          accountId: ctx.oidc.session.accountId,
        });
        grant.addOIDCScope(ctx.oidc.requestParamScopes ? [...ctx.oidc.requestParamScopes].join(' ') : 'openid');
        grant.addOIDCClaims(['sub', ...extraClaims, ...emailClaims, ...profileClaims]);
        await grant.save();
        return grant;
      },
    } : {}),
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims(use) { return claimsFor(sub, use); },
      };
    },
    ttl: {
      AccessToken: accessTokenTtl,
      AuthorizationCode: 60,
      IdToken: idTokenTtl,
      RefreshToken: refreshTokenTtl,
      Interaction: 3600,
      Session: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      ClientCredentials: 600,
      DeviceCode: 600,
      BackchannelAuthenticationRequest: 600,
      PreAuthorizedCode: 600,
    },
    renderError(ctx, out, error) {
      log('error page:', out, error?.message);
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><title>oops! something went wrong</title></head><body><h1>oops! something went wrong</h1><pre>${
        Object.entries(out).map(([k, v]) => `${k}: ${String(v).replace(/[<>&]/g, '')}`).join('\n')}</pre></body></html>`;
    },
  });

  // Port wildcard: a registered redirect_uri or post_logout_redirect_uri with
  // port 0 (`https://localhost:0/oauth2/idpresponse`) matches that URL on any
  // port, so the IdP can be configured before the proxy has picked its port.
  const anyPort = (value, registered) => {
    try {
      const url = new URL(value);
      url.port = '0';
      return registered.some((uri) => {
        try { return new URL(uri).href === url.href; } catch { return false; }
      });
    } catch {
      return false;
    }
  };
  const { prototype } = provider.Client;
  const redirectUriAllowed = prototype.redirectUriAllowed;
  const postLogoutRedirectUriAllowed = prototype.postLogoutRedirectUriAllowed;
  prototype.redirectUriAllowed = function allowed(value) {
    return redirectUriAllowed.call(this, value) || anyPort(value, this.redirectUris);
  };
  prototype.postLogoutRedirectUriAllowed = function allowed(value) {
    return postLogoutRedirectUriAllowed.call(this, value)
      || anyPort(value, this.postLogoutRedirectUris);
  };

  provider.on('grant.success', (ctx) => {
    const type = ctx.oidc.params.grant_type;
    stats.grants[type] = (stats.grants[type] ?? 0) + 1;
  });
  provider.on('grant.error', (ctx, err) => { stats.grant_errors += 1; log('grant.error', err.message); });
  provider.on('authorization.success', () => { stats.authorizations += 1; });
  provider.on('authorization.error', (ctx, err) => { stats.authorization_errors += 1; log('authorization.error', err.message, err.error_description ?? ''); });
  provider.on('end_session.success', () => { stats.end_sessions += 1; });
  provider.on('backchannel.success', () => { stats.backchannel_logouts += 1; });
  provider.on('backchannel.error', (ctx, err) => { stats.backchannel_logout_errors += 1; log('backchannel.error', err.message); });
  provider.on('userinfo.error', (ctx, err) => { log('userinfo.error', err.message); });
  provider.on('server_error', (ctx, err) => { log('server_error', err); });

  // Userinfo has no success event: count answers of the userinfo route.
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.oidc?.route === 'userinfo') {
      if (ctx.status === 200) stats.userinfo += 1;
      else stats.userinfo_errors += 1;
    }
  });

  if (cognitoPool !== null) provider.use(cognitoLogout(provider, anyPort));

  const callback = provider.callback();
  server.on('request', (req, res) => {
    log(req.method, req.url);
    if (req.url === '/__test/stats' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify(stats));
      return;
    }
    if (cognitoPool !== null) {
      const [path, query] = splitUrl(req.url);
      if (path === DISCOVERY) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'not_found', error_description: `discovery is at /${cognitoPool}${DISCOVERY}` }));
        return;
      }
      // Not setting req.originalUrl keeps oidc-provider's endpoint URLs at
      // the root (it would take the stripped prefix as its mount path).
      if (path === `/${cognitoPool}${DISCOVERY}`) req.url = `${DISCOVERY}${query}`;
    }
    if (splitUrl(req.url)[0] === DISCOVERY) stats.discoveries += 1;
    if (authMethods && req.method === 'POST' && splitUrl(req.url)[0] === tokenPath) {
      enforceAuthMethods(req, res, callback);
      return;
    }
    callback(req, res);
  });

  const line = cognitoPool === null ? { issuer } : { issuer, endpoint_url: origin };
  process.stdout.write(`${JSON.stringify(line)}\n`);
  log(`listening, issuer ${issuer}, clients ${clients.map((c) => c.client_id).join(', ')}`);
});

/** `/a/b?x=1` → `['/a/b', '?x=1']`. */
function splitUrl(url) {
  const at = url.indexOf('?');
  return at === -1 ? [url, ''] : [url.slice(0, at), url.slice(at)];
}

// Cognito's `GET /logout?client_id=…&logout_uri=…`: the client must exist
// and logout_uri must be one of its sign-out URLs (`logout_urls` or
// `post_logout_redirect_uris`, with the any-port rule); then the user's
// session here ends (the next login asks for the password again) and the
// browser goes to logout_uri. Cognito shows an error page otherwise: here
// a 400 with the reason. The query is kept in stats.last_logout either way.
function cognitoLogout(provider, anyPort) {
  return async (ctx, next) => {
    if (ctx.path !== '/logout' || ctx.method !== 'GET') {
      await next();
      return;
    }
    const query = Object.fromEntries(new URLSearchParams(ctx.querystring));
    stats.logouts += 1;
    stats.last_logout = query;
    const fail = (description) => {
      log('logout:', description);
      ctx.status = 400;
      ctx.type = 'json';
      ctx.body = { error: 'invalid_request', error_description: description };
    };
    const client = query.client_id ? await provider.Client.find(query.client_id) : undefined;
    if (!client) {
      fail(`unknown client_id ${JSON.stringify(query.client_id ?? null)}`);
      return;
    }
    const allowed = signOutUrls.get(client.clientId) ?? [];
    if (!query.logout_uri || !(allowed.includes(query.logout_uri) || anyPort(query.logout_uri, allowed))) {
      fail(`logout_uri ${JSON.stringify(query.logout_uri ?? null)} is not a sign-out URL of ${client.clientId}`);
      return;
    }
    const session = await provider.Session.get(ctx);
    if (session.accountId) await session.destroy();
    ctx.status = 302;
    ctx.redirect(query.logout_uri);
  };
}

function refuse(res, description) {
  log('token endpoint:', description);
  stats.grant_errors += 1;
  res.writeHead(401, { 'content-type': 'application/json', 'cache-control': 'no-store' });
  res.end(JSON.stringify({ error: 'invalid_client', error_description: description }));
}

// Reads the token request's body, refuses a client authentication method
// not in tokenEndpointAuthMethods, and hands the body to oidc-provider (which
// takes an already-read body from req.body).
function enforceAuthMethods(req, res, callback) {
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8');
    const basic = /^basic /i.test(req.headers.authorization ?? '');
    const post = new URLSearchParams(body).has('client_secret');
    if (basic && !authMethods.includes('client_secret_basic')) {
      refuse(res, 'client_secret_basic is not allowed here');
    } else if (post && !authMethods.includes('client_secret_post')) {
      refuse(res, 'client_secret_post is not allowed here');
    } else {
      req.body = body;
      callback(req, res);
    }
  });
}

server.on('error', (err) => {
  log('cannot listen:', err.message);
  process.exit(1);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
