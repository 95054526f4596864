import { describe, expect, it } from 'vitest';
import { etcdErrorHint, type EtcdHintContext } from '../../src/store/etcd';

const tls: EtcdHintContext = { tls: true, clientCert: true, prefix: '/weavets/' };
const tlsNoCert: EtcdHintContext = { tls: true, clientCert: false, prefix: '/weavets/' };
const auth: EtcdHintContext = { tls: false, clientCert: false, username: 'weavets', prefix: '/weavets/' };
const plain: EtcdHintContext = { tls: false, clientCert: false, prefix: '/weavets/' };

// Messages as grpc-js and etcd give them (seen against etcd 3.4 in test/e2e/etcd-secure.test.ts).
const WRONG_CA =
  '14 UNAVAILABLE: No connection established. Last error: Error: unable to verify the first certificate. Resolution note: ';
const NO_CLIENT_CERT =
  '14 UNAVAILABLE: No connection established. Last error: 800CEB674D7F0000:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:../deps/openssl/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 42';
const BAD_PASSWORD = '3 INVALID_ARGUMENT: etcdserver: authentication failed, invalid user ID or password';

describe('etcdErrorHint', () => {
  it('names --etcd-ca for a server certificate the CA did not sign', () => {
    expect(etcdErrorHint(WRONG_CA, tls)).toMatch(/not signed by the CA in --etcd-ca/);
    expect(etcdErrorHint('self-signed certificate in certificate chain', plain)).toMatch(/--etcd-ca/);
  });

  it('asks for --etcd-cert/--etcd-key when etcd requires a client certificate', () => {
    expect(etcdErrorHint(NO_CLIENT_CERT, tlsNoCert)).toMatch(
      /requires a client certificate.*--etcd-cert and --etcd-key/,
    );
    expect(etcdErrorHint('SSL alert number 116', tlsNoCert)).toMatch(/--etcd-cert/);
  });

  it('says the client certificate was refused when one was given', () => {
    expect(etcdErrorHint(NO_CLIENT_CERT, tls)).toMatch(/refused this host's client certificate/);
  });

  it('names the address mismatch', () => {
    expect(
      etcdErrorHint(
        "Hostname/IP does not match certificate's altnames: IP: 192.0.2.12 is not in the cert's list: 192.0.2.11",
        tls,
      ),
    ).toMatch(/subjectAltName/);
  });

  it('points at the user and the password file on a rejected password', () => {
    const h = etcdErrorHint(BAD_PASSWORD, auth)!;
    expect(h).toMatch(/rejected user 'weavets'/);
    expect(h).toMatch(/--etcd-password-file/);
  });

  it('asks for credentials when etcd has auth on and none were given', () => {
    expect(etcdErrorHint('etcdserver: user name is empty', plain)).toMatch(/--etcd-user/);
  });

  it('names the prefix to grant on permission denied', () => {
    expect(etcdErrorHint('7 PERMISSION_DENIED: etcdserver: permission denied', auth)).toMatch(/readwrite \/weavets\//);
  });

  it('says nothing for an etcd that is simply down', () => {
    expect(etcdErrorHint('no answer within 3000 ms', tls)).toBeUndefined();
    expect(
      etcdErrorHint('14 UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED 192.0.2.11:2379', tls),
    ).toBeUndefined();
  });
});
