// A real OpenID provider for the federation tests: npm `oidc-provider` (a certified implementation),
// run by tests/support/oidc_idp.py on the Node 22 the suite installs into .tools/.
//
//   node oidc_provider.mjs <oidc-provider module path> <client_id> <client_secret> <redirect_uri>
//
// Listens on a free loopback port and prints `READY <issuer>`. Its development login form takes any
// login (the account id) with any password, then asks for consent: the test drives both forms.
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const [modulePath, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const { default: Provider } = await import(pathToFileURL(modulePath).href);

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: `idp-${id}`, preferred_username: id, email: `${id}@idp.example` };
      },
    };
  },
  claims: { openid: ['sub'], profile: ['preferred_username'], email: ['email'] },
  conformIdTokenClaims: false, // the requested claims go in the ID token, which Bastion reads
  cookies: { keys: ['oidc-test-cookie-key-not-a-secret'] },
  features: { devInteractions: { enabled: true } },
});
server.on('request', provider.callback());
process.on('SIGTERM', () => server.close(() => process.exit(0)));
console.log(`READY ${issuer}`);
