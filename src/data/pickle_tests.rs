//! Tests of the pickle reader, and a writer of the exact bytes numpy emits for an `object`
//! array of int lists (used by the IMDB loader's tests too).
//!
//! What numpy writes, `np.save` of an object array holding `[1, 2]` and `[3]`: the `.npy`
//! header (`{'descr': '|O', 'fortran_order': False, 'shape': (2,), }`) and then
//! `pickle.dump(arr, f, protocol=P)`: P = 4 in numpy 2 (checked with numpy 2.4.6), 2 or 3
//! in older numpy under Python 2 or 3. `ndarray.__reduce__` gives
//! `(numpy.core.multiarray._reconstruct, (numpy.ndarray, (0,), b'b'),
//!   (1, (2,), dtype('O'), False, [[1, 2], [3]]))`
//! and `dtype.__reduce__` gives `(numpy.dtype, ('O8', False, True), (3, '|', None, None,
//! None, -1, -1, 63))`. Under protocol 3 that is (memo ids counted from 0):
//!
//! ```text
//! 80 03  c numpy.core.multiarray\n _reconstruct\n q00  c numpy\n ndarray\n q01
//! K 00 85 q02  C 01 'b' q03  87 q04  R q05
//! ( K 01  K 02 85 q06  c numpy\n dtype\n q07  X 02000000 'O8' q08  89 88 87 q09  R q0a
//!   ( K 03  X 01000000 '|' q0b  N N N  J ffffffff  J ffffffff  K 3f  t q0c  b
//!   89  ] q0d ( ] q0e ( K 01 K 02 e  ] q0f K 03 a  e
//! t q10  b  .
//! ```
//!
//! (numpy 2 names the module `numpy._core.multiarray`). The protocol 3 and 4 bytes below
//! are what Python 3.11's pickler wrote for that array under numpy 2.4.6, module name
//! aside; the writer reproduces them byte for byte. Protocol 2 from Python 3 wraps `b'b'` in
//! `_codecs.encode('b', 'latin1')`; protocol 2 from Python 2 spells the byte strings `U` (SHORT_BINSTRING) and the dtype
//! flags `K 00 K 01`; protocol 4 wraps everything in a `FRAME`, names globals with two
//! `SHORT_BINUNICODE` strings and `STACK_GLOBAL`, memoizes with `MEMOIZE`, and refers to the
//! second `"numpy"` with `BINGET`. Lists are appended in batches of 1000 (`MARK … APPENDS`),
//! a batch of one with `APPEND`, as CPython's pickler does.

use super::*;

/// How the bytes are spelled: Python 2 protocol 2, Python 3 protocol 3 or 4.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Py2Proto2,
    Proto3,
    Proto4,
}

struct Writer {
    out: Vec<u8>,
    memo: u32,
    flavor: Flavor,
}

impl Writer {
    fn put(&mut self) {
        if self.flavor == Flavor::Proto4 {
            self.out.push(0x94);
        } else if self.memo < 256 {
            self.out.extend([b'q', self.memo as u8]);
        } else {
            self.out.push(b'r');
            self.out.extend(self.memo.to_le_bytes());
        }
        self.memo += 1;
    }

    fn int(&mut self, v: i64) {
        if (0..256).contains(&v) {
            self.out.extend([b'K', v as u8]);
        } else if (0..65536).contains(&v) {
            self.out.push(b'M');
            self.out.extend((v as u16).to_le_bytes());
        } else if i32::try_from(v).is_ok() {
            self.out.push(b'J');
            self.out.extend((v as i32).to_le_bytes());
        } else {
            // LONG1: minimal two's complement, little-endian.
            let b = v.to_le_bytes();
            let mut n = 8;
            while n > 1 {
                let (top, next) = (b[n - 1], b[n - 2]);
                if (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0) {
                    n -= 1;
                } else {
                    break;
                }
            }
            self.out.extend([0x8a, n as u8]);
            self.out.extend(&b[..n]);
        }
    }

    /// A text string: Python 2 `str` (SHORT_BINSTRING) or Python 3 `str`.
    fn text(&mut self, s: &str) {
        match self.flavor {
            Flavor::Py2Proto2 => {
                self.out.extend([b'U', s.len() as u8]);
            }
            Flavor::Proto3 => {
                self.out.push(b'X');
                self.out.extend((s.len() as u32).to_le_bytes());
            }
            Flavor::Proto4 => {
                self.out.extend([0x8c, s.len() as u8]);
            }
        }
        self.out.extend(s.as_bytes());
        self.put();
    }

    fn global(&mut self, module: &str, name: &str, numpy_memo: &mut Option<u32>) {
        if self.flavor == Flavor::Proto4 {
            // CPython memoizes the module string; a second "numpy" is a BINGET.
            match (module, *numpy_memo) {
                ("numpy", Some(id)) => self.out.extend([b'h', id as u8]),
                _ => {
                    if module == "numpy" {
                        *numpy_memo = Some(self.memo);
                    }
                    self.text(module);
                }
            }
            self.text(name);
            self.out.push(0x93);
        } else {
            self.out.push(b'c');
            self.out.extend(format!("{module}\n{name}\n").as_bytes());
        }
        self.put();
    }

    /// A list of items written by `item`, batched like CPython's `_batch_appends`.
    fn list<T>(&mut self, items: &[T], mut item: impl FnMut(&mut Self, &T)) {
        self.out.push(b']');
        self.put();
        for batch in items.chunks(1000) {
            if batch.len() == 1 {
                item(self, &batch[0]);
                self.out.push(b'a');
            } else {
                self.out.push(b'(');
                for x in batch {
                    item(self, x);
                }
                self.out.push(b'e');
            }
        }
    }
}

/// The pickle numpy writes for a 1-D object array of int lists, in `flavor`.
pub(crate) fn numpy_object_pickle(rows: &[Vec<i64>], flavor: Flavor) -> Vec<u8> {
    let mut w = Writer {
        out: Vec::new(),
        memo: 0,
        flavor,
    };
    let mut numpy_memo = None;
    let proto = match flavor {
        Flavor::Py2Proto2 => 2,
        Flavor::Proto3 => 3,
        Flavor::Proto4 => 4,
    };
    w.out.extend([0x80, proto]);
    w.global("numpy.core.multiarray", "_reconstruct", &mut numpy_memo);
    w.global("numpy", "ndarray", &mut numpy_memo);
    w.int(0);
    w.out.push(0x85);
    w.put();
    if flavor == Flavor::Py2Proto2 {
        w.text("b");
    } else {
        w.out.extend([b'C', 1, b'b']);
        w.put();
    }
    w.out.push(0x87);
    w.put();
    w.out.push(b'R');
    w.put();
    // State: (1, (n,), dtype, False, [rows]).
    w.out.push(b'(');
    w.int(1);
    w.int(rows.len() as i64);
    w.out.push(0x85);
    w.put();
    w.global("numpy", "dtype", &mut numpy_memo);
    w.text("O8");
    if flavor == Flavor::Py2Proto2 {
        w.int(0);
        w.int(1);
    } else {
        w.out.extend([0x89, 0x88]);
    }
    w.out.push(0x87);
    w.put();
    w.out.push(b'R');
    w.put();
    w.out.push(b'(');
    w.int(3);
    w.text("|");
    w.out.extend(b"NNN");
    w.int(-1);
    w.int(-1);
    w.int(63);
    w.out.push(b't');
    w.put();
    w.out.push(b'b');
    w.out.push(0x89);
    w.list(rows, |w, row| w.list(row, |w, &v| w.int(v)));
    w.out.push(b't');
    w.put();
    w.out.extend(b"b.");
    if flavor == Flavor::Proto4 {
        // FRAME: the opcode stream after PROTO, preceded by its 8-byte length.
        let body = w.out.split_off(2);
        w.out.push(0x95);
        w.out.extend((body.len() as u64).to_le_bytes());
        w.out.extend(body);
    }
    w.out
}

/// The exact bytes of the protocol 3 example in the module doc, written by hand.
const PROTO3_EXAMPLE: &[u8] = b"\x80\x03cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\n\
ndarray\nq\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04Rq\x05(K\x01K\x02\x85q\x06cnumpy\ndtype\n\
q\x07X\x02\x00\x00\x00O8q\x08\x89\x88\x87q\tRq\n(K\x03X\x01\x00\x00\x00|q\x0bNNNJ\xff\xff\
\xff\xffJ\xff\xff\xff\xffK?tq\x0cb\x89]q\r(]q\x0e(K\x01K\x02e]q\x0fK\x03aetq\x10b.";

#[test]
fn writer_matches_the_documented_protocol_3_bytes() {
    let rows = vec![vec![1, 2], vec![3]];
    assert_eq!(numpy_object_pickle(&rows, Flavor::Proto3), PROTO3_EXAMPLE);
    let p = parse(PROTO3_EXAMPLE, "t").unwrap();
    assert_eq!(object_array_of_int_lists(&p, "t").unwrap(), rows);
}

#[test]
fn every_flavor_round_trips_wide_ints_empty_rows_and_long_batches() {
    let long: Vec<i64> = (0..2503).map(|i| i * 37 % 70_001).collect();
    let rows = vec![
        vec![1, 255, 256, 65_535, 65_536, 88_586, -1, -300],
        vec![],
        vec![i64::from(i32::MAX) + 1, i64::MIN, i64::MAX, -(1 << 40)],
        long,
        vec![7],
    ];
    for flavor in [Flavor::Py2Proto2, Flavor::Proto3, Flavor::Proto4] {
        let bytes = numpy_object_pickle(&rows, flavor);
        let p = parse(&bytes, "t").unwrap_or_else(|e| panic!("{flavor:?}: {e}"));
        let got = object_array_of_int_lists(&p, "t").unwrap();
        assert_eq!(got, rows, "{flavor:?}");
    }
}

#[test]
fn a_protocol_4_pickle_uses_frames_and_memo_lookups() {
    let bytes = numpy_object_pickle(&[vec![5]], Flavor::Proto4);
    assert_eq!(&bytes[..3], b"\x80\x04\x95");
    let frame = u64::from_le_bytes(bytes[3..11].try_into().unwrap());
    assert_eq!(frame as usize, bytes.len() - 11);
    assert!(
        bytes.windows(2).any(|w| w == b"h\x03"),
        "no BINGET of memo 3, the first \"numpy\""
    );
}

#[test]
fn truncation_and_bad_opcodes_are_typed_errors_naming_the_offset() {
    let good = numpy_object_pickle(&[vec![1, 2, 3], vec![4]], Flavor::Proto3);
    for cut in [1, 5, 40, good.len() - 1] {
        let e = parse(&good[..cut], "f.npy").unwrap_err();
        assert!(matches!(e, Error::Data(_)), "{e}");
        assert!(e.to_string().contains("f.npy: pickle at byte"), "{e}");
    }
    // PERSID ('P') is not something numpy writes.
    let e = parse(b"\x80\x02P1\n.", "f").unwrap_err().to_string();
    assert!(e.contains("opcode 0x50") && e.contains("byte 2"), "{e}");
    // A length that runs past the end is refused before anything is allocated.
    let e = parse(b"\x80\x03X\xff\xff\xff\x7f", "f")
        .unwrap_err()
        .to_string();
    assert!(e.contains("length 2147483647 runs past the end"), "{e}");
    // A 9-byte LONG1 does not fit 64 bits.
    let e = parse(b"\x8a\x09\x01\x02\x03\x04\x05\x06\x07\x08\x09.", "f")
        .unwrap_err()
        .to_string();
    assert!(e.contains("9 bytes exceeds 64 bits"), "{e}");
    let e = parse(b"e.", "f").unwrap_err().to_string();
    assert!(e.contains("without a MARK"), "{e}");
    let e = parse(b"K\x01h\x05.", "f").unwrap_err().to_string();
    assert!(e.contains("memo key 5"), "{e}");
    let e = parse(b".", "f").unwrap_err().to_string();
    assert!(e.contains("without enough values"), "{e}");
}

#[test]
fn a_self_referencing_list_parses_without_looping() {
    // l = []; l.append(l) — a cycle through the memo; the reader stores it flat.
    let p = parse(b"\x80\x02]q\x00h\x00a.", "f").unwrap();
    assert_eq!(p.items(p.root).unwrap(), &[p.root]);
    let e = object_array_of_int_lists(&p, "f").unwrap_err().to_string();
    assert!(e.contains("expected a numpy array"), "{e}");
}

#[test]
fn non_numpy_shapes_are_rejected_with_what_was_found() {
    // A plain list of lists is not an ndarray.
    let e = object_array_of_int_lists(&parse(b"](]K\x01ae.", "f").unwrap(), "f")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected a numpy array, found list of length 1"),
        "{e}"
    );
    // A float element.
    let mut bytes = numpy_object_pickle(&[vec![1]], Flavor::Proto3);
    let at = bytes.windows(3).position(|w| w == b"K\x01a").unwrap();
    bytes.splice(at..at + 2, *b"N");
    let e = object_array_of_int_lists(&parse(&bytes, "f").unwrap(), "f")
        .unwrap_err()
        .to_string();
    assert!(e.contains("element 0, item 0 is a None"), "{e}");
}

/// `pickle.dumps(a, protocol=P)` of the two-row object array under numpy 2.4.6 and
/// Python 3.11, verbatim.
const NUMPY2_PROTO2: &[u8] = b"\x80\x02cnumpy._core.multiarray\n_reconstruct\nq\x00cnumpy\n\
ndarray\nq\x01K\x00\x85q\x02c_codecs\nencode\nq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00\
latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\t(K\x01K\x02\x85q\ncnumpy\ndtype\nq\x0bX\x02\x00\x00\x00\
O8q\x0c\x89\x88\x87q\rRq\x0e(K\x03X\x01\x00\x00\x00|q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?\
tq\x10b\x89]q\x11(]q\x12(K\x01K\x02e]q\x13K\x03aetq\x14b.";
const NUMPY2_PROTO4: &[u8] = b"\x80\x04\x95\x97\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.\
multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\
\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02O8\x94\
\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK?t\x94b\x89]\x94(\
]\x94(K\x01K\x02e]\x94K\x03aet\x94b.";

#[test]
fn numpy_2_pickles_read_back_and_the_writer_matches_them() {
    let rows = vec![vec![1, 2], vec![3]];
    for bytes in [NUMPY2_PROTO2, NUMPY2_PROTO4] {
        let p = parse(bytes, "t").unwrap();
        assert_eq!(object_array_of_int_lists(&p, "t").unwrap(), rows);
    }
    // Module name aside (numpy 2 says numpy._core), the writer's protocol 4 is numpy's.
    let ours = numpy_object_pickle(&rows, Flavor::Proto4);
    let theirs = NUMPY2_PROTO4.to_vec();
    let strip = |b: &[u8], module: &[u8]| -> Vec<u8> {
        let at = b.windows(module.len()).position(|w| w == module).unwrap();
        [&b[11..at - 2], &b[at + module.len()..]].concat()
    };
    assert_eq!(
        strip(&ours, b"numpy.core.multiarray"),
        strip(&theirs, b"numpy._core.multiarray")
    );
}
