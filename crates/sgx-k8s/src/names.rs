//! Every Kubernetes name the project uses: resources, annotations, labels, paths.
//!
//! This is the one place to look for them; the device plugin, the node registrar, the webhook
//! and the Helm chart all use these values. Where a name comes from another project (Intel's
//! device plugins, node-feature-discovery, AKS), the doc comment says so.

// ---------------------------------------------------------------------------------------------
// Extended resources
// ---------------------------------------------------------------------------------------------

/// Domain of the Intel SGX resources, annotations and labels.
pub const SGX_DOMAIN: &str = "sgx.intel.com";

/// EPC memory in bytes: an extended resource published in Node status (not device-plugin
/// devices). Pods request it as a memory-like quantity, e.g. `10Mi`.
pub const EPC: &str = "sgx.intel.com/epc";

/// Shared device resource that hands a container `/dev/sgx_enclave`.
pub const ENCLAVE: &str = "sgx.intel.com/enclave";

/// Shared device resource that hands a container `/dev/sgx_provision` (needed to run a quoting
/// enclave in the container itself).
pub const PROVISION: &str = "sgx.intel.com/provision";

/// Azure AKS gen-1 EPC resource, counted in MiB (`"10"` means 10 MiB of EPC).
pub const AZURE_EPC_MIB: &str = "kubernetes.azure.com/sgx_epc_mem_in_MiB";

/// Intel's deprecated DCAP infrastructure resource (`-dcap-infra-resources`); not served by
/// confcom, listed so that it is recognised.
pub const INTEL_QE: &str = "sgx.intel.com/qe";

/// Intel's deprecated platform-registration resource; not served by confcom.
pub const INTEL_REGISTRATION: &str = "sgx.intel.com/registration";

/// Resource names whose request makes a container an SGX (EPC) container for the webhook.
pub const EPC_RESOURCES: [&str; 2] = [EPC, AZURE_EPC_MIB];

/// One mebibyte: the unit of [`AZURE_EPC_MIB`].
pub const MIB: u64 = 1 << 20;

// ---------------------------------------------------------------------------------------------
// Pod annotations
// ---------------------------------------------------------------------------------------------

/// Pod annotation (Intel's name) selecting the quote provider: [`QUOTE_PROVIDER_AESMD`] wires
/// the node's AESM socket into the EPC containers; a container name gives that container
/// [`PROVISION`] as well.
pub const QUOTE_PROVIDER_ANNOTATION: &str = "sgx.intel.com/quote-provider";

/// Value of [`QUOTE_PROVIDER_ANNOTATION`] that asks for the node's AESM socket.
pub const QUOTE_PROVIDER_AESMD: &str = "aesmd";

/// Pod annotation (confcom's name): `"true"` asks for the node's quote helper (AESM) socket.
pub const QUOTE_HELPER_ANNOTATION: &str = "confcom.io/quote-helper";

/// Pod annotation written by the webhook: the pod's total EPC as a binary quantity (`12Mi`);
/// runtimes such as Kata size the VM's EPC from it.
pub const EPC_ANNOTATION: &str = "sgx.intel.com/epc";

// ---------------------------------------------------------------------------------------------
// Quote helper (AESM) wiring
// ---------------------------------------------------------------------------------------------

/// Directory on the node (and in the container) that holds the AESM socket.
pub const AESMD_SOCKET_DIR: &str = "/var/run/aesmd";

/// The AESM socket itself.
pub const AESMD_SOCKET_PATH: &str = "/var/run/aesmd/aesm.socket";

/// Name of the pod volume the webhook adds for [`AESMD_SOCKET_DIR`] (Intel's name).
pub const AESMD_VOLUME_NAME: &str = "aesmd-socket";

/// Environment variable that makes the SGX SDK / Open Enclave quote out of process (only its
/// presence matters).
pub const SGX_AESM_ADDR_ENV: &str = "SGX_AESM_ADDR";

/// Value the webhook gives [`SGX_AESM_ADDR_ENV`].
pub const SGX_AESM_ADDR_VALUE: &str = "1";

// ---------------------------------------------------------------------------------------------
// Node labels and annotations
// ---------------------------------------------------------------------------------------------

/// Node label `true` on nodes with usable SGX (Intel's `sgx_epchook` name; confcom's node
/// registrar sets it too). Chart node selectors use it.
pub const LABEL_SGX_CAPABLE: &str = "sgx.intel.com/capable";

/// Node label set by Intel's NodeFeatureRule `intel.sgx`.
pub const LABEL_INTEL_NFD_SGX: &str = "intel.feature.node.kubernetes.io/sgx";

/// node-feature-discovery built-in label (NFD ≥ v0.12): SGX enabled with EPC > 0.
pub const LABEL_NFD_SGX_ENABLED: &str = "feature.node.kubernetes.io/cpu-security.sgx.enabled";

/// node-feature-discovery built-in label of NFD v0.10–v0.11 (renamed in v0.12).
pub const LABEL_NFD_SGX_ENABLED_LEGACY: &str = "feature.node.kubernetes.io/cpu-sgx.enabled";

/// node-feature-discovery CPUID label: the CPU has SGX.
pub const LABEL_NFD_CPUID_SGX: &str = "feature.node.kubernetes.io/cpu-cpuid.SGX";

/// node-feature-discovery CPUID label: SGX flexible launch control.
pub const LABEL_NFD_CPUID_SGXLC: &str = "feature.node.kubernetes.io/cpu-cpuid.SGXLC";

/// confcom node label: `true` when the CPU supports SGX2 (EDMM), else `false`.
pub const LABEL_SGX2: &str = "confcom.io/sgx2";

/// confcom node label: `true` when flexible launch control is available (DCAP needs it).
pub const LABEL_SGX_FLC: &str = "confcom.io/sgx-flc";

/// confcom node label: total EPC of the node in whole MiB (decimal digits, e.g. `"8064"`).
pub const LABEL_EPC_MIB: &str = "confcom.io/sgx-epc-mib";

/// Node annotation with which NFD marks extended resources it manages.
pub const NFD_EXTENDED_RESOURCES_ANNOTATION: &str = "nfd.node.kubernetes.io/extended-resources";

// ---------------------------------------------------------------------------------------------
// Device nodes
// ---------------------------------------------------------------------------------------------

/// In-kernel SGX enclave device node.
pub const DEV_SGX_ENCLAVE: &str = "/dev/sgx_enclave";

/// In-kernel SGX provisioning device node.
pub const DEV_SGX_PROVISION: &str = "/dev/sgx_provision";

/// Legacy container path of the enclave device (DCAP driver, older SDKs open it).
pub const DEV_SGX_ENCLAVE_LEGACY: &str = "/dev/sgx/enclave";

/// Legacy container path of the provisioning device.
pub const DEV_SGX_PROVISION_LEGACY: &str = "/dev/sgx/provision";
