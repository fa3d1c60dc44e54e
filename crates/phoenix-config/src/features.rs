//! The features Phoenix knows, and what each needs. This list is the one place validation learns
//! feature names from, until the feature library replaces it.

/// What a feature is and what it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeatureSpec {
    /// The name used in `features`.
    pub name: &'static str,
    /// One line about it.
    pub description: &'static str,
    /// It needs GPUs assigned to the container (`gpu_assignment`).
    pub needs_gpu: bool,
    /// It needs the container's `nesting` flag.
    pub needs_nesting: bool,
    /// Features that must run before it, in the guest itself or in the template it is cloned from.
    pub requires: &'static [&'static str],
}

/// Every feature Phoenix knows.
pub const FEATURES: &[FeatureSpec] = &[
    FeatureSpec {
        name: "base_setup",
        description: "Base packages, locale, time zone and an admin user.",
        needs_gpu: false,
        needs_nesting: false,
        requires: &[],
    },
    FeatureSpec {
        name: "docker",
        description: "Docker Engine, and Portainer per `portainer_role`.",
        needs_gpu: false,
        needs_nesting: true,
        requires: &[],
    },
    FeatureSpec {
        name: "nvidia",
        description: "NVIDIA user-space driver matching the host, and the container toolkit.",
        needs_gpu: true,
        needs_nesting: false,
        requires: &[],
    },
    FeatureSpec {
        name: "vllm",
        description: "vLLM serving `vllm_model` with an OpenAI-compatible API.",
        needs_gpu: true,
        needs_nesting: false,
        requires: &["nvidia"],
    },
    FeatureSpec {
        name: "ollama",
        description: "Ollama, on the GPU when one is assigned.",
        needs_gpu: false,
        needs_nesting: false,
        requires: &[],
    },
];

/// The feature of that name.
pub fn feature(name: &str) -> Option<&'static FeatureSpec> {
    FEATURES.iter().find(|f| f.name == name)
}
