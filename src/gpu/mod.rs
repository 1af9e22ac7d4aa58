pub(crate) mod cell;
pub(crate) mod stack;
