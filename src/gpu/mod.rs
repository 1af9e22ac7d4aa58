pub(crate) mod cell;
pub(crate) mod convlstm;
pub(crate) mod stack;
