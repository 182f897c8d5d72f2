//! Many clients signing at once on one token, some with wrong PINs: each gets its own right answer.

use keyport_e2e::*;
use serde_json::json;

async fn run(token: &Token, agent: &Agent, clients: usize, rounds: usize) {
    run_through(token, agent, clients, rounds, &[MODULE]).await
}

/// As [`run`], client `n` going through `modules[n % len]`.
async fn run_through(
    token: &Token,
    agent: &Agent,
    clients: usize,
    rounds: usize,
    modules: &[&str],
) {
    let slot = agent.trusted().await.slot_of("keyport-demo").await;
    let mut tasks = Vec::new();
    for n in 0..clients {
        let mut c = agent.trusted().await;
        let module = modules[n % modules.len()].to_string();
        let certs = [
            token.cert_der("rsa-2048"),
            token.cert_der("ec-p256"),
            token.cert_der("ec-p384"),
        ];
        tasks.push(tokio::spawn(async move {
            let mut outcomes = (0, 0);
            for round in 0..rounds {
                // Every third client-round uses a wrong PIN; keys and algorithms rotate.
                let wrong = (n + round) % 3 == 0;
                let k = (n + round) % 3;
                let (id, alg) = [("01", "sha256"), ("02", "sha384"), ("03", "sha512")][k];
                let digest = sha(alg, format!("client {n} round {round}").as_bytes());
                let pin = if wrong { format!("99{n:02}") } else { PIN.to_string() };
                let params = json!({"slot_id": slot, "cert_id": id, "pin": pin, "data": b64(&digest), "algorithm_reference": alg, "module": module});
                match c.call("pkcs11.signData", params).await {
                    Ok(sig) if !wrong => {
                        let sig = unb64(sig.as_str().unwrap());
                        assert!(openssl_verify(&certs[k], alg, &digest, &sig), "client {n} round {round}: bad signature");
                        outcomes.0 += 1;
                    }
                    Err(e) if wrong => {
                        assert_eq!(e["data"]["reason"], "PIN_INCORRECT", "client {n} round {round}: {e}");
                        outcomes.1 += 1;
                    }
                    other => panic!("client {n} round {round} (wrong PIN: {wrong}): {other:?}"),
                }
            }
            outcomes
        }));
    }
    let mut total = (0, 0);
    for t in tasks {
        let (ok, refused) = t.await.unwrap();
        total.0 += ok;
        total.1 += refused;
    }
    assert_eq!(total.0 + total.1, clients * rounds);
    assert!(total.0 > 0 && total.1 > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signers_with_wrong_pins_mixed_in() {
    let token = Token::provision();
    let agent = Agent::start(&token, &[]);
    run(&token, &agent, 12, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signers_with_per_request_login() {
    let token = Token::provision();
    let agent = Agent::start(&token, &["--no-login-cache"]);
    run(&token, &agent, 8, 6).await;
}

/// The same through two paths to one library (a symlink): one module, one login lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signers_through_a_symlinked_module() {
    let token = Token::provision();
    let dir = tempfile::tempdir().unwrap();
    let alias = dir.path().join("libsofthsm2-alias.so");
    std::os::unix::fs::symlink(MODULE, &alias).unwrap();
    let alias = alias.to_str().unwrap();
    let agent = Agent::start(&token, &["--module", alias]);
    run_through(&token, &agent, 12, 9, &[MODULE, alias]).await;
}

/// The same with a module whose `C_Logout` always fails (a wrapper injects CKR_DEVICE_ERROR).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signers_when_logout_fails() {
    let token = Token::provision();
    let module = keyport_e2e::fault::FaultModule::new();
    module.set("logout=device_error");
    let agent = Agent::start(&token, &["--module", module.path_str()]);
    run_through(&token, &agent, 12, 9, &[module.path_str()]).await;
    assert!(module
        .calls()
        .iter()
        .any(|l| l == "C_Logout rv=0x30 (injected)"));
}
