//! Per-thread scratch memory, sized once by the compiled model.

/// Two ping-pong activation buffers of `rows × width` floats, owned by one thread, and for
/// models whose layers quantise their input (full int8) a buffer of each row's codes and one
/// scale per row.
///
/// A [`crate::Predictor`] makes them ([`crate::Predictor::new_workspace`]); the hot call only
/// borrows them, so running a model allocates nothing.
#[derive(Debug, Clone)]
pub struct Workspace {
    pub(crate) front: Vec<f32>,
    pub(crate) back: Vec<f32>,
    pub(crate) row_scales: Vec<f32>,
    pub(crate) codes: Vec<u8>,
    pub(crate) rows: usize,
    pub(crate) width: usize,
}

impl Workspace {
    /// A workspace for blocks of `rows` samples whose widest activation is `width`.
    pub fn new(rows: usize, width: usize) -> Self {
        Workspace {
            front: vec![0.0; rows * width],
            back: vec![0.0; rows * width],
            row_scales: vec![0.0; rows],
            codes: Vec::new(),
            rows,
            width,
        }
    }

    /// This workspace with room for its rows' activation codes, `code_stride` bytes a row.
    pub(crate) fn with_codes(mut self, code_stride: usize) -> Self {
        self.codes = vec![0; self.rows * code_stride];
        self
    }

    /// Rows processed per block.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes of scratch held.
    pub fn bytes(&self) -> usize {
        (self.front.len() + self.back.len() + self.row_scales.len()) * std::mem::size_of::<f32>()
            + self.codes.len()
    }
}
