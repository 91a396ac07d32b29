// A real OpenID Connect provider (node-oidc-provider) for the single sign-on tests, on 127.0.0.1 over http.
//
//   node tests/support/oidc_provider.mjs PORT REDIRECT_URI POST_LOGOUT_REDIRECT_URI
//
// One confidential client (vmportal / vmportal-oidc-secret) allowed REDIRECT_URI, and POST_LOGOUT_REDIRECT_URI
// after its RP-initiated logout (the end_session_endpoint, on by default, asks the user to confirm). Its development login page
// (devInteractions) takes any name with any password; the accounts below carry a groups claim, any other
// name has none. It prints "listening" once it accepts connections, and stops on SIGTERM.
import { Provider } from "oidc-provider";

const [port, redirectUri, postLogoutRedirectUri] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const GROUPS = { olga: ["vm-operators", "staff"], ada: ["vm-admins"] };

const provider = new Provider(issuer, {
  clients: [{
    client_id: "vmportal",
    client_secret: "vmportal-oidc-secret",
    redirect_uris: [redirectUri],
    post_logout_redirect_uris: [postLogoutRedirectUri],
    token_endpoint_auth_method: "client_secret_post", // what mozilla-django-oidc sends by default
  }],
  claims: {
    openid: ["sub"],
    email: ["email", "email_verified"],
    profile: ["preferred_username", "name"],
    groups: ["groups"],
  },
  scopes: ["openid", "email", "profile", "groups"],
  async findAccount(ctx, id) {
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: `${id}@example.org`, email_verified: true, preferred_username: id,
                 name: id, ...(GROUPS[id] ? { groups: GROUPS[id] } : {}) };
      },
    };
  },
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
});

const server = provider.listen(Number(port), "127.0.0.1", () => console.log("listening"));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
