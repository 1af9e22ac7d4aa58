pub(crate) mod lstm;
