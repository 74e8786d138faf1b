// Verifies an x-amzn-oidc-data token with aws-jwt-verify's AlbJwtVerifier,
// the library applications behind an ALB use, fetching the key from
// portcullis' /oauth2/public-keys/{kid} (ALB's key-server format).
//
//   JWT=... ALB_ARN=... ISSUER=... CLIENT_ID=... JWKS_URI=https://localhost:PORT/oauth2/public-keys \
//   NODE_EXTRA_CA_CERTS=ca.pem node tests/oidc/verify-alb.mjs
//
// Prints the verified payload as JSON on stdout; exits 1 with the reason on failure.

import { AlbJwtVerifier } from 'aws-jwt-verify';

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} is not set`);
    process.exit(2);
  }
  return value;
};

try {
  const verifier = AlbJwtVerifier.create({
    albArn: env('ALB_ARN'),
    issuer: env('ISSUER'),
    clientId: env('CLIENT_ID'),
    jwksUri: env('JWKS_URI'),
  });
  const payload = await verifier.verify(env('JWT'));
  console.log(JSON.stringify(payload));
} catch (error) {
  console.error(`${error.name}: ${error.message}`);
  process.exit(1);
}
