//! `ratls-proxy demo`: simulated enclaves (one matching the policy, one with another
//! MRENCLAVE, one in DEBUG mode, one accepted but at risk under Intel's early TCB data), a
//! TD, AMD SEV-SNP VMs and AWS Nitro enclaves (one accepted, one in DEBUG mode each), the
//! proxy in front of them and its admin listener, with curl lines to paste.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use crate::addr::{Authority, HostPattern};
use crate::appraise::nitro_policy::{NitroPolicy, PcrValue};
use crate::appraise::policy::EnclavePolicy;
use crate::appraise::snp_policy::SnpPolicy;
use crate::appraise::td_policy::TdPolicy;
use crate::ca::LocalCa;
use crate::config::{default_ca_dir, Config, EnclaveConfig, RouteConfig, Unmatched};
use crate::dcap::ids::MrEnclave;
use crate::dcap::quote::TeeType;
use crate::dcap::tcb::TcbStatus;
use crate::dcap::time::UnixTime;
use crate::proxy::Proxy;
use crate::ratls::BindingMode;
use crate::sim::dstack_snp::{ARK_FILE, KDS_DIR};
use crate::sim::nitro::SimNitro;
use crate::sim::{
    EnclaveSpec, NitroEnclaveSpec, SimConfig, SimEnclave, SimPki, SnpSim, SnpSimSpec, TdSpec,
};
use crate::snp::ids::Measurement;
use crate::snp::report::GuestPolicy;
use crate::snp::Product;
use crate::source::nitro::NitroCrlSpec;
use crate::source::trust_and_collateral;
use crate::source::{AmdKdsSpec, CollateralSpec, TrustRoot};

/// `ratls-proxy demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where the demo proxy listens.
    #[arg(long, default_value = "127.0.0.1:3128")]
    pub listen: std::net::SocketAddr,
}

/// The MRENCLAVE the demo policy trusts.
const TRUSTED: MrEnclave = MrEnclave([0xe1; 32]);
/// The MRENCLAVE of the impostor build.
const OTHER: MrEnclave = MrEnclave([0x0b; 32]);

fn enclave(host: &str, dial: std::net::SocketAddr) -> anyhow::Result<EnclaveConfig> {
    Ok(EnclaveConfig {
        hosts: vec![HostPattern::parse(host).map_err(anyhow::Error::msg)?],
        policy: EnclavePolicy {
            mrenclave: vec![TRUSTED],
            ..EnclavePolicy::default()
        },
        binding: BindingMode::Auto,
        connect_to: Some(Authority::parse(&dial.to_string(), None).map_err(anyhow::Error::msg)?),
        snp: None,
        nitro: None,
    })
}

/// The MEASUREMENT the demo's SEV-SNP entries pin.
const SNP_MEASUREMENT: Measurement = Measurement([0x5e; 48]);

/// A `tee = "snp"` entry for `host` pinning [`SNP_MEASUREMENT`].
fn snp_vm(host: &str, dial: std::net::SocketAddr) -> anyhow::Result<EnclaveConfig> {
    Ok(EnclaveConfig {
        snp: Some(SnpPolicy {
            measurement: vec![SNP_MEASUREMENT],
            ..SnpPolicy::default()
        }),
        policy: EnclavePolicy::default(),
        ..enclave(host, dial)?
    })
}

/// The PCR0 the demo's Nitro entries pin.
const NITRO_PCR0: [u8; 48] = [0x5a; 48];

/// A `tee = "nitro"` entry for `host` pinning [`NITRO_PCR0`].
fn nitro_enclave(host: &str, dial: std::net::SocketAddr) -> anyhow::Result<EnclaveConfig> {
    Ok(EnclaveConfig {
        nitro: Some(NitroPolicy {
            pcr0: vec![PcrValue::from(NITRO_PCR0)],
            ..NitroPolicy::default()
        }),
        policy: EnclavePolicy::default(),
        ..enclave(host, dial)?
    })
}

/// Runs the demo until Ctrl-C.
pub(super) fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    let base = default_ca_dir().join("demo");
    let now = UnixTime::now();
    let pki = SimPki::load_or_create(&base.join("sim-pki"), now).context("demo test PKI")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let any = "127.0.0.1:0".parse().context("address")?;
        let start = |spec: EnclaveSpec| SimEnclave::start(&pki, SimConfig { spec, log_requests: true, ..SimConfig::default() }, any, now);
        let good = start(EnclaveSpec { mrenclave: TRUSTED, ..EnclaveSpec::default() }).await?;
        let other = start(EnclaveSpec { mrenclave: OTHER, ..EnclaveSpec::default() }).await?;
        let debug = start(EnclaveSpec { mrenclave: TRUSTED, debug: true, ..EnclaveSpec::default() }).await?;
        // Up to date today; out of date under Intel's early TCB data (the next TCB recovery).
        let aging = SimEnclave::start(&pki, SimConfig { early_tcb_status: Some(TcbStatus::OutOfDate), log_requests: true, ..SimConfig::default() }, any, now).await?;
        // A simulated TDX confidential VM beside the SGX enclaves.
        let td = TdSpec::default();
        let cvm = SimEnclave::start(&pki, SimConfig { td: Some(td.clone()), log_requests: true, ..SimConfig::default() }, any, now).await?;
        // AMD SEV-SNP VMs behind dstack (the sim AMD PKI of the same directory).
        let amd = Arc::new(SnpSim::load_or_create(&base.join("sim-pki"), now).context("demo SEV-SNP PKI")?);
        let snp_spec = SnpSimSpec::new(Arc::clone(&amd), Product::Milan, SNP_MEASUREMENT.0);
        let mut snp_debug_spec = snp_spec.clone();
        snp_debug_spec.report.policy |= GuestPolicy::DEBUG;
        let snp = SimEnclave::start(&pki, SimConfig { snp: Some(snp_spec), log_requests: true, ..SimConfig::default() }, any, now).await?;
        let snp_debug = SimEnclave::start(&pki, SimConfig { snp: Some(snp_debug_spec), log_requests: true, ..SimConfig::default() }, any, now).await?;
        // AWS Nitro enclaves behind dstack (the sim Nitro PKI of the same directory).
        let aws = Arc::new(SimNitro::load_or_create(&base.join("sim-pki"), now).context("demo Nitro PKI")?);
        let nitro_spec = NitroEnclaveSpec::new(Arc::clone(&aws), NITRO_PCR0);
        let nitro_debug_spec = NitroEnclaveSpec { debug: true, ..nitro_spec.clone() };
        let nitro = SimEnclave::start(&pki, SimConfig { nitro: Some(nitro_spec), log_requests: true, ..SimConfig::default() }, any, now).await?;
        let nitro_debug = SimEnclave::start(&pki, SimConfig { nitro: Some(nitro_debug_spec), log_requests: true, ..SimConfig::default() }, any, now).await?;

        let mut config = Config::defaults();
        config.listen = args.listen;
        config.admin_listen = None;
        config.unmatched = Unmatched::Passthrough;
        config.ca_dir = base.join("ca");
        config.source.trust_root = TrustRoot::Pem(base.join("sim-pki/root.pem"));
        config.source.collateral = CollateralSpec::Dir(base.join("sim-pki/collateral"));
        config.source.amd_kds = Some(AmdKdsSpec::Dir(base.join("sim-pki").join(KDS_DIR)));
        config.source.amd_trust_root = Some(base.join("sim-pki").join(ARK_FILE));
        config.source.nitro_trust_root = Some(base.join("sim-pki/nitro-root.pem"));
        config.source.nitro_crls = NitroCrlSpec::Dir(base.join("sim-pki/collateral/nitro"));
        config.enclaves = vec![
            enclave("good.enclave.test", good.addr())?,
            enclave("other.enclave.test", other.addr())?,
            enclave("debug.enclave.test", debug.addr())?,
            enclave("aging.enclave.test", aging.addr())?,
            EnclaveConfig {
                hosts: vec![HostPattern::parse("cvm.enclave.test").map_err(anyhow::Error::msg)?],
                policy: EnclavePolicy {
                    tee: Some(TeeType::Tdx),
                    td: TdPolicy { mrtd: vec![td.mr_td], ..TdPolicy::default() },
                    ..EnclavePolicy::default()
                },
                binding: BindingMode::Auto,
                connect_to: Some(Authority::parse(&cvm.addr().to_string(), None).map_err(anyhow::Error::msg)?),
                snp: None,
                nitro: None,
            },
            snp_vm("snp.enclave.test", snp.addr())?,
            snp_vm("snp-debug.enclave.test", snp_debug.addr())?,
            nitro_enclave("nitro.enclave.test", nitro.addr())?,
            nitro_enclave("nitro-debug.enclave.test", nitro_debug.addr())?,
        ];
        config.routes = vec![RouteConfig {
            listen: "127.0.0.1:0".parse().context("address")?,
            upstream: Authority::parse("good.enclave.test", Some(443)).map_err(anyhow::Error::msg)?,
        }];
        let (anchor, collateral) = trust_and_collateral(&config.source, !config.enclaves.is_empty())?;
        let ca = LocalCa::load_or_create(&config.ca_dir, now)?;
        let ca_path = ca.cert_path();
        let proxy = Arc::new(Proxy::new(config, &anchor, collateral, ca));
        let mut running = Arc::clone(&proxy).start().await.with_context(|| format!("cannot listen on {}", args.listen))?;
        let (admin, admin_task) = crate::admin::start(proxy, "127.0.0.1:0".parse().context("address")?).await.context("cannot start the admin listener")?;
        let p = running.addr;
        let route = running.route_addrs.first().copied();
        let ca = ca_path.display();
        println!("ratls-proxy demo: proxy on http://{p} (admin http://{admin}), four simulated SGX enclaves, a TDX confidential VM, two AMD SEV-SNP VMs and two AWS Nitro enclaves (test PKIs, not Intel's, AMD's or AWS's)");
        println!("policy for *.enclave.test: MRENCLAVE {TRUSTED}, no DEBUG, TCB UpToDate; cvm.enclave.test: TDX, MRTD {}; snp*.enclave.test: SEV-SNP, MEASUREMENT {SNP_MEASUREMENT}; nitro*.enclave.test: AWS Nitro, PCR0 {}\n", td.mr_td, hex::encode(NITRO_PCR0));
        println!("# accepted: the enclave's JSON echo (HTTP/1.1, then HTTP/2)");
        println!("curl -x http://{p} --cacert {ca} --http1.1 https://good.enclave.test/hello");
        println!("curl -x http://{p} --cacert {ca} --http2 https://good.enclave.test/hello");
        println!("# accepted, no CA needed: the proxy originates attested TLS");
        println!("curl -x http://{p} http://good.enclave.test/hello");
        println!("# streamed as produced (5 chunks 500 ms apart), and a WebSocket upgrade answered 101");
        println!("curl -N -x http://{p} 'http://good.enclave.test/stream?n=5&ms=500'");
        println!("curl -i -N -x http://{p} http://good.enclave.test/ws -H 'Connection: Upgrade' -H 'Upgrade: websocket' -H 'Sec-WebSocket-Version: 13' -H 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=='");
        if let Some(r) = route {
            println!("# accepted through a sidecar route (plain HTTP in, attested TLS out)");
            println!("curl http://{r}/hello");
        }
        println!("# refused: 502, Proxy-Status and JSON code mrenclave_mismatch");
        println!("curl -i -x http://{p} http://other.enclave.test/hello");
        println!("# refused: code debug_enclave (curl reports the CONNECT answer)");
        println!("curl -x http://{p} --cacert {ca} https://debug.enclave.test/hello -v 2>&1 | grep -iE 'HTTP/|proxy-status'");
        let from = UnixTime(now.0 - 3600 + crate::sim::pki::SIM_EARLY_DAYS * 86_400);
        println!("# accepted, but at risk: Intel's early TCB data (the next TCB recovery) says its platform is out of date, and it becomes the standard data around {}; the proxy warns once in its log", from.to_rfc3339().get(..10).unwrap_or_default());
        println!("curl -x http://{p} http://aging.enclave.test/hello");
        println!("# at risk: the admin listener lists every enclave host under the standard and the early data, with the date");
        println!("curl -sS --noproxy '*' http://{admin}/tcb");
        println!("# accepted: a TDX confidential VM (MRTD pinned), attested the same way");
        println!("curl -x http://{p} --cacert {ca} https://cvm.enclave.test/hello");
        println!("# accepted: an AMD SEV-SNP VM behind dstack (MEASUREMENT pinned, the report signed by the sim chip's VCEK)");
        println!("curl -x http://{p} --cacert {ca} https://snp.enclave.test/hello");
        println!("# refused: code debug_enclave (an SEV-SNP guest the host may debug)");
        println!("curl -i -x http://{p} http://snp-debug.enclave.test/hello");
        println!("# accepted: an AWS Nitro enclave behind dstack (PCR0 pinned, the document signed under the sim Nitro root, its CRLs checked)");
        println!("curl -x http://{p} --cacert {ca} https://nitro.enclave.test/hello");
        println!("# refused: code debug_enclave (a Nitro enclave in debug mode: PCR0-2 all zeros)");
        println!("curl -i -x http://{p} http://nitro-debug.enclave.test/hello");
        println!("# or with HTTPS_PROXY, as an unmodified app would:");
        println!("HTTPS_PROXY=http://{p} curl --cacert {ca} https://good.enclave.test/hello\n");
        println!("Serving until Ctrl-C. Each enclave prints the requests it serves; the proxy logs one line per request.");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = running.wait() => {}
        }
        admin_task.abort();
        drop((good, other, debug, aging, cvm, snp, snp_debug, nitro, nitro_debug));
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
