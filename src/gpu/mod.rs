pub(crate) mod cell;
pub(crate) mod convlstm;
pub(crate) mod params;
pub(crate) mod stack;
pub(crate) mod stack_backward;
pub(crate) mod unfused;
