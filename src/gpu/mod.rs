pub(crate) mod cell;
pub(crate) mod convlstm;
pub(crate) mod stack;
pub(crate) mod unfused;
