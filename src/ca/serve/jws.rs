//! See the module list in `ca::serve`.
