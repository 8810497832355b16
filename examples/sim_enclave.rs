//! A simulated RA-TLS enclave server for trying ratls-proxy without SGX hardware.
//!
//! ```sh
//! cargo run --example sim_enclave -- --listen 127.0.0.1:8443 --pki-dir /tmp/sim-pki
//! cargo run -- verify https://127.0.0.1:8443 --trust-root /tmp/sim-pki/root.pem \
//!     --collateral /tmp/sim-pki/collateral.json
//! ```
//!
//! Besides its JSON echo it answers `/ws` (a WebSocket echo), `/stream?n=N&ms=M` (N chunks M ms
//! apart), `/upload?ms=M` (the body's size) and `/bytes?n=N` (N bytes); see docs/development.md,
//! "The simulated enclave".
//!
//! Several sims started with the same `--pki-dir` share one test root and one collateral
//! bundle; `--tcb-status` puts each on its own TCB level of that bundle. `--tee tdx` makes a
//! simulated TDX confidential VM instead (a TDX v4 quote under OID 1.2.840.113741.1337.8, or
//! dstack's with `--binding dstack`, in the form `--dstack-wire` names, with an app identity
//! in RTMR3 the `--dstack-*` flags set or break); `DIR/collateral/` holds both platforms'
//! bundles. `--tee snp` makes an AMD SEV-SNP guest behind dstack (`.1.8`, platform
//! `sev-snp`, signed by the sim VCEK of `--product`); the PKI directory then also holds the
//! sim ARKs (`amd-ark.pem`, for `[collateral] amd_trust_root`) and an offline KDS directory
//! (`collateral/amd/`, for `amd_kds`).
//!
//! AWS Nitro: `--tee nitro --pcr0 HEX [--debug] [--pcr1/2/3/4/8 HEX] [--nitro-wrong-key]
//! [--nitro-age SECS] [--nitro-carrier dstack|evervault|both]` serves dstack's `.1.8`
//! certificate (or Evervault's: the document's hex in a DNS subjectAltName) with a Nitro
//! attestation document signed by the sim Nitro PKI (`DIR/nitro-root.pem`; its CRLs in
//! `DIR/collateral/nitro/`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ratls_proxy::dcap::ids::{IsvProdId, IsvSvn, MrEnclave, MrSigner, MrTd, Rtmr, TeeTcbSvn};
use ratls_proxy::dcap::tcb::TcbStatus;
use ratls_proxy::dcap::time::UnixTime;
use ratls_proxy::sim::{
    DstackSpec, DstackWire, EnclaveSpec, SimBinding, SimConfig, SimEnclave, SimPki, TdSpec,
};
// AWS Nitro
use ratls_proxy::sim::nitro::SimNitro;
use ratls_proxy::sim::{NitroEnclaveSpec, SimNitroCarrier};
// SEV-SNP
use ratls_proxy::sim::{SnpSim, SnpSimSpec};
use ratls_proxy::snp::report::GuestPolicy;
use ratls_proxy::snp::Product;
use std::sync::Arc;

/// A simulated SGX enclave serving HTTPS with an RA-TLS certificate (test PKI, not Intel).
#[derive(Parser, Debug)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// MRENCLAVE the quote claims.
    #[arg(
        long,
        default_value = "e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1e1"
    )]
    mrenclave: MrEnclave,
    /// MRSIGNER the quote claims.
    #[arg(
        long,
        default_value = "5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"
    )]
    mrsigner: MrSigner,
    /// ISVPRODID.
    #[arg(long, default_value_t = 1)]
    isv_prod_id: u16,
    /// ISVSVN.
    #[arg(long, default_value_t = 1)]
    isv_svn: u16,
    /// `sgx` (default), `tdx`: a simulated TDX confidential VM, `snp`: an AMD SEV-SNP
    /// guest behind dstack, or `nitro`: an AWS Nitro enclave behind dstack.
    #[arg(long, default_value = "sgx", value_parser = ["sgx", "tdx", "snp", "nitro"])]
    tee: String,
    /// MRTD the TDX quote claims.
    #[arg(long)]
    mrtd: Option<MrTd>,
    /// RTMR0 the TDX quote claims.
    #[arg(long)]
    rtmr0: Option<Rtmr>,
    /// RTMR1 the TDX quote claims.
    #[arg(long)]
    rtmr1: Option<Rtmr>,
    /// RTMR2 the TDX quote claims.
    #[arg(long)]
    rtmr2: Option<Rtmr>,
    /// RTMR3 the TDX quote claims.
    #[arg(long)]
    rtmr3: Option<Rtmr>,
    /// Set the DEBUG attribute (SGX ATTRIBUTES, or TD_ATTRIBUTES with --tee tdx).
    #[arg(long)]
    debug: bool,
    /// The platform's TCB status; with --tee tdx also TDRelaunchAdvised or
    /// TDRelaunchAdvisedConfigurationNeeded (a TD 1.5 quote launched on an out-of-date
    /// module, running on an up-to-date one).
    #[arg(long, default_value = "UpToDate")]
    tcb_status: TcbStatus,
    /// The platform's TCB status under Intel's early data (the next TCB recovery; in the PKI
    /// directory's `collateral/*-early.json`); default: the same as --tcb-status.
    #[arg(long)]
    early_status: Option<TcbStatus>,
    /// TEE_TCB_SVN the TDX quote claims (16 bytes hex; default: module TDX_01 SVN 3).
    #[arg(long)]
    tee_tcb_svn: Option<TeeTcbSvn>,
    /// TEE_TCB_SVN2 (the current TCB): forges a v5 quote with a TD 1.5 body.
    #[arg(long)]
    tee_tcb_svn2: Option<TeeTcbSvn>,
    /// A v5 quote with a TD 1.5 body whose TEE_TCB_SVN2 equals TEE_TCB_SVN.
    #[arg(long)]
    td15: bool,
    /// Key binding: cosmian, gramine (P-384; SGX: legacy OID and DICE evidence, TDX: DICE
    /// evidence), dstack (TDX) or wrong.
    #[arg(long, default_value = "cosmian")]
    binding: SimBinding,
    /// With --binding dstack: the attestation's form, `v0` or `v1` (dstack's `.1.8`) or
    /// `legacy` (`.1.1` quote and `.1.2` event log).
    #[arg(long, default_value = "legacy")]
    dstack_wire: DstackWire,
    /// With --binding dstack: the app id RTMR3's `app-id` event names (hex).
    #[arg(long, visible_alias = "app-id")]
    dstack_app_id: Option<String>,
    /// The compose hash (`compose-hash` event, hex).
    #[arg(long, visible_alias = "compose-hash")]
    dstack_compose_hash: Option<String>,
    /// The instance id (`instance-id` event, hex).
    #[arg(long, visible_alias = "instance-id")]
    dstack_instance_id: Option<String>,
    /// The measured OS image hash (`os-image-hash` event, hex; empty: no such event).
    #[arg(long, visible_alias = "os-image-hash")]
    dstack_os_image_hash: Option<String>,
    /// The key provider, NAME:ID (`key-provider` event).
    #[arg(long, visible_alias = "key-provider")]
    dstack_key_provider: Option<String>,
    /// Carry a compose hash other than the one extended into RTMR3 (event_log_mismatch).
    #[arg(long)]
    dstack_break_replay: bool,
    /// Bind the dstack report data to another key than the certificate's (binding_mismatch).
    #[arg(long)]
    dstack_wrong_key: bool,
    // SEV-SNP
    /// With --tee snp: the MEASUREMENT the report claims (96 hex).
    #[arg(long)]
    measurement: Option<String>,
    /// With --tee snp: the product line, milan, genoa or turin.
    #[arg(long, default_value = "milan")]
    product: String,
    /// With --tee snp: the VMPL the report comes from.
    #[arg(long, default_value_t = 0)]
    vmpl: u32,
    /// With --tee snp: GUEST_SVN.
    #[arg(long, default_value_t = 1)]
    guest_svn: u32,
    /// With --tee snp: the guest may be tied to a migration agent (POLICY.MIGRATE_MA).
    #[arg(long)]
    snp_migration_agent: bool,
    /// With --tee snp: signed by another chip's VCEK (carried), the report naming the sim chip.
    #[arg(long)]
    snp_other_chip: bool,
    /// With --tee snp: REPORT_DATA bound to another key than the certificate's.
    #[arg(long)]
    snp_wrong_key: bool,
    /// With --tee snp: HOST_DATA not the hash of the carried mr_config.
    #[arg(long)]
    snp_wrong_host_data: bool,
    /// With --tee snp: carry the ASK and the VCEK in the attestation.
    #[arg(long)]
    snp_carry_chain: bool,
    /// Where the test PKI lives (created if absent): root.pem and collateral.json.
    #[arg(long, default_value = "sim-pki")]
    pki_dir: PathBuf,
    /// Do not print a line per request (for benchmarks).
    #[arg(long)]
    quiet: bool,
    // AWS Nitro
    /// With --tee nitro: PCR0, the enclave image (96 hex; default 5a…5a).
    #[arg(long)]
    pcr0: Option<String>,
    /// With --tee nitro: PCR1 (kernel and bootstrap, 96 hex).
    #[arg(long)]
    pcr1: Option<String>,
    /// With --tee nitro: PCR2 (application, 96 hex).
    #[arg(long)]
    pcr2: Option<String>,
    /// With --tee nitro: PCR3 (the parent's IAM role, 96 hex).
    #[arg(long)]
    pcr3: Option<String>,
    /// With --tee nitro: PCR4 (the parent instance, 96 hex).
    #[arg(long)]
    pcr4: Option<String>,
    /// With --tee nitro: PCR8 (the image's signing certificate, 96 hex).
    #[arg(long)]
    pcr8: Option<String>,
    /// With --tee nitro: bind the document to another key than the certificate's
    /// (binding_mismatch).
    #[arg(long)]
    nitro_wrong_key: bool,
    /// With --tee nitro: the document was made this many seconds before now.
    #[arg(long, default_value_t = 0)]
    nitro_age: u64,
    /// With --tee nitro: where the certificate carries the document: `dstack` (the `.1.8`
    /// extension), `evervault` (hex in a DNS subjectAltName, user_data = the SPKI DER) or
    /// `both` (ambiguous: refused by the proxy).
    #[arg(long, default_value = "dstack")]
    nitro_carrier: SimNitroCarrier,
}

// AWS Nitro
/// The sim Nitro PKI in `--pki-dir` and the enclave the flags describe, with --tee nitro.
fn nitro_spec(args: &Args, now: UnixTime) -> Result<Option<NitroEnclaveSpec>, String> {
    if args.tee != "nitro" {
        return Ok(None);
    }
    let pcr = |flag: &str, v: &Option<String>| -> Result<Option<[u8; 48]>, String> {
        v.as_deref()
            .map(|h| {
                let bytes = hex::decode(h).map_err(|e| format!("--{flag} `{h}`: {e}"))?;
                <[u8; 48]>::try_from(bytes.as_slice())
                    .map_err(|_| format!("--{flag}: 48 bytes (96 hex digits), not {}", bytes.len()))
            })
            .transpose()
    };
    let pki = SimNitro::load_or_create(&args.pki_dir, now).map_err(|e| e.to_string())?;
    let pcr0 = pcr("pcr0", &args.pcr0)?.unwrap_or([0x5a; 48]);
    let mut spec = NitroEnclaveSpec::new(Arc::new(pki), pcr0);
    for (i, flag, v) in [
        (1, "pcr1", &args.pcr1),
        (2, "pcr2", &args.pcr2),
        (3, "pcr3", &args.pcr3),
        (4, "pcr4", &args.pcr4),
        (8, "pcr8", &args.pcr8),
    ] {
        if let Some(value) = pcr(flag, v)? {
            spec.pcrs.insert(i, value);
        }
    }
    spec.debug = args.debug;
    spec.wrong_key = args.nitro_wrong_key;
    spec.age_secs = args.nitro_age;
    spec.carrier = args.nitro_carrier;
    Ok(Some(spec))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let now = UnixTime::now();
    let pki = match SimPki::load_or_create(&args.pki_dir, now) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sim_enclave: {e}");
            return ExitCode::from(2);
        }
    };
    let dstack = match dstack_spec(&args) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("sim_enclave: {e}");
            return ExitCode::from(2);
        }
    };
    // AWS Nitro
    let nitro = match nitro_spec(&args, now) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("sim_enclave: {e}");
            return ExitCode::from(2);
        }
    };
    // SEV-SNP
    let snp = match snp_spec(&args, now) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim_enclave: {e}");
            return ExitCode::from(2);
        }
    };
    let config = SimConfig {
        snp,
        spec: EnclaveSpec {
            mrenclave: args.mrenclave,
            mrsigner: args.mrsigner,
            isv_prod_id: IsvProdId(args.isv_prod_id),
            isv_svn: IsvSvn(args.isv_svn),
            debug: args.debug,
        },
        td: (args.tee == "tdx").then(|| {
            let d = TdSpec::default();
            TdSpec {
                mr_td: args.mrtd.unwrap_or(d.mr_td),
                rtmr: [
                    args.rtmr0.unwrap_or(d.rtmr[0]),
                    args.rtmr1.unwrap_or(d.rtmr[1]),
                    args.rtmr2.unwrap_or(d.rtmr[2]),
                    args.rtmr3.unwrap_or(d.rtmr[3]),
                ],
                debug: args.debug,
                tee_tcb_svn: args.tee_tcb_svn.unwrap_or(d.tee_tcb_svn),
                tee_tcb_svn2: args
                    .tee_tcb_svn2
                    .or_else(|| args.td15.then(|| args.tee_tcb_svn.unwrap_or(d.tee_tcb_svn))),
                ..d
            }
        }),
        tcb_status: args.tcb_status,
        early_tcb_status: args.early_status,
        binding: args.binding,
        dstack,
        log_requests: !args.quiet,
        // AWS Nitro
        nitro: nitro.clone(),
        ..SimConfig::default()
    };
    let sim = match SimEnclave::start(&pki, config, args.listen, now).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sim_enclave: {e}");
            return ExitCode::from(2);
        }
    };
    let dir = args.pki_dir.display();
    println!("sim enclave listening on https://{}", sim.addr());
    // AWS Nitro
    if let Some(n) = &nitro {
        let pcrs: Vec<String> = n
            .pcrs
            .iter()
            .map(|(i, v)| format!("pcr{i} {}", hex::encode(v)))
            .collect();
        println!(
            "  nitro pcr0 {}  debug {}  {}  document age {} s  wrong key {}  carrier {:?}",
            hex::encode(n.pcr0),
            n.debug,
            pcrs.join("  "),
            n.age_secs,
            n.wrong_key,
            n.carrier
        );
        println!("  nitro root {dir}/nitro-root.pem  CRLs {dir}/collateral/nitro");
        let _ = tokio::signal::ctrl_c().await;
        return ExitCode::SUCCESS;
    }
    // SEV-SNP
    if args.tee == "snp" {
        println!(
            "  SEV-SNP {} (dstack {})  measurement {}  vmpl {}  guest_svn {}  debug {}",
            args.product,
            if args.dstack_wire == DstackWire::V0 {
                "v0"
            } else {
                "v1"
            },
            args.measurement
                .as_deref()
                .unwrap_or(DEFAULT_SNP_MEASUREMENT),
            args.vmpl,
            args.guest_svn,
            args.debug
        );
        println!("  [collateral] amd_trust_root = \"{dir}/amd-ark.pem\"  amd_kds = \"{dir}/collateral/amd\"");
        let _ = tokio::signal::ctrl_c().await;
        return ExitCode::SUCCESS;
    }
    let measurement = if args.tee == "tdx" {
        format!("mrtd {}", args.mrtd.unwrap_or(TdSpec::default().mr_td))
    } else {
        format!("mrenclave {}", args.mrenclave)
    };
    let early = args.early_status.unwrap_or(args.tcb_status);
    println!(
        "  {measurement}  tcb {} (early data: {early})  binding {:?}  debug {}",
        args.tcb_status, args.binding, args.debug
    );
    if args.binding == SimBinding::Dstack {
        let d = dstack_spec(&args).unwrap_or_default();
        println!(
            "  dstack {:?}  app_id {}  compose_hash {}  instance_id {}  os_image_hash {}  key_provider {}:{}",
            d.wire,
            hex::encode(&d.app_id),
            hex::encode(&d.compose_hash),
            hex::encode(&d.instance_id),
            hex::encode(&d.os_image_hash),
            d.key_provider.0,
            d.key_provider.1
        );
    }
    println!("  trust root {dir}/root.pem  collateral {dir}/collateral (SGX and TDX bundles)");
    let _ = tokio::signal::ctrl_c().await;
    ExitCode::SUCCESS
}

// SEV-SNP
/// The MEASUREMENT an SNP sim claims unless told.
const DEFAULT_SNP_MEASUREMENT: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";

/// The SEV-SNP guest the flags describe (`None` unless `--tee snp`).
fn snp_spec(args: &Args, now: UnixTime) -> Result<Option<SnpSimSpec>, String> {
    if args.tee != "snp" {
        return Ok(None);
    }
    let hex = args
        .measurement
        .as_deref()
        .unwrap_or(DEFAULT_SNP_MEASUREMENT);
    let measurement: [u8; 48] = hex::decode(hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("--measurement `{hex}`: 96 hex digits"))?;
    let product = Product::ALL
        .into_iter()
        .find(|p| p.name().eq_ignore_ascii_case(&args.product))
        .ok_or_else(|| format!("--product `{}`: milan, genoa or turin", args.product))?;
    let sim = SnpSim::load_or_create(&args.pki_dir, now).map_err(|e| e.to_string())?;
    let mut spec = SnpSimSpec::new(Arc::new(sim), product, measurement);
    spec.wire = match args.dstack_wire {
        DstackWire::V0 => DstackWire::V0,
        // SEV-SNP has no legacy carrier: the default is V1.
        DstackWire::V1 | DstackWire::Legacy => DstackWire::V1,
    };
    spec.report.vmpl = args.vmpl;
    spec.report.guest_svn = args.guest_svn;
    if args.debug {
        spec.report.policy |= GuestPolicy::DEBUG;
    }
    if args.snp_migration_agent {
        spec.report.policy |= GuestPolicy::MIGRATE_MA;
    }
    spec.other_chip = args.snp_other_chip;
    spec.wrong_key = args.snp_wrong_key;
    spec.wrong_host_data = args.snp_wrong_host_data;
    spec.carry_chain = args.snp_carry_chain;
    Ok(Some(spec))
}

/// The dstack app the flags describe (defaults: `DstackSpec::default()`).
fn dstack_spec(args: &Args) -> Result<DstackSpec, String> {
    let d = DstackSpec::default();
    let hex_or = |flag: &str, v: &Option<String>, default: Vec<u8>| match v {
        None => Ok(default),
        Some(h) => hex::decode(h).map_err(|e| format!("--{flag} `{h}`: {e}")),
    };
    let key_provider = match &args.dstack_key_provider {
        None => d.key_provider.clone(),
        Some(p) => {
            let (name, id) = p.split_once(':').unwrap_or((p, ""));
            (name.to_owned(), id.to_owned())
        }
    };
    Ok(DstackSpec {
        wire: args.dstack_wire,
        app_id: hex_or("dstack-app-id", &args.dstack_app_id, d.app_id.clone())?,
        compose_hash: hex_or(
            "dstack-compose-hash",
            &args.dstack_compose_hash,
            d.compose_hash.clone(),
        )?,
        instance_id: hex_or(
            "dstack-instance-id",
            &args.dstack_instance_id,
            d.instance_id.clone(),
        )?,
        os_image_hash: hex_or(
            "dstack-os-image-hash",
            &args.dstack_os_image_hash,
            d.os_image_hash.clone(),
        )?,
        key_provider,
        break_replay: args.dstack_break_replay,
        wrong_key: args.dstack_wrong_key,
    })
}
