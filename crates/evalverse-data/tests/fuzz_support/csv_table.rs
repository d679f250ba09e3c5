//! CSV inputs for the fuzz targets: a seed table edited cell by cell and written back with
//! proper quoting (so the edits reach past the CSV syntax to the row checks), then through the
//! byte edits of `fuzz_support`. For the crates whose parsers read CSV; included with `#[path]`.

use proptest::prelude::*;

use super::support::{self, ByteOp, Seeds};

/// One edit of a table; rows and columns are taken modulo the table's size.
#[derive(Debug, Clone)]
pub enum CellOp {
    /// Set a cell to a vocabulary word, a `TOKENS` entry or generated text.
    Set {
        row: u16,
        col: u16,
        to: Cell,
    },
    /// Add a field at the end of a row (a row longer than the header).
    Push {
        row: u16,
        to: Cell,
    },
    /// Drop the last field of a row.
    Pop {
        row: u16,
    },
    DropColumn {
        col: u16,
    },
    DuplicateRow {
        row: u16,
    },
    DropRow {
        row: u16,
    },
}

#[derive(Debug, Clone)]
pub enum Cell {
    Word(u16),
    Token(u16),
    Text(String),
    Number(f64),
}

fn cell() -> impl Strategy<Value = Cell> {
    prop_oneof![
        3 => any::<u16>().prop_map(Cell::Word),
        2 => any::<u16>().prop_map(Cell::Token),
        1 => ".{0,16}".prop_map(Cell::Text),
        1 => prop_oneof![Just(0.0), Just(1.0), Just(4.0), Just(2.5), Just(-1.0), Just(1e300), any::<f64>()]
            .prop_map(Cell::Number),
    ]
}

fn cell_op() -> impl Strategy<Value = CellOp> {
    prop_oneof![
        6 => (any::<u16>(), any::<u16>(), cell()).prop_map(|(row, col, to)| CellOp::Set { row, col, to }),
        1 => (any::<u16>(), cell()).prop_map(|(row, to)| CellOp::Push { row, to }),
        1 => any::<u16>().prop_map(|row| CellOp::Pop { row }),
        1 => any::<u16>().prop_map(|col| CellOp::DropColumn { col }),
        1 => any::<u16>().prop_map(|row| CellOp::DuplicateRow { row }),
        1 => any::<u16>().prop_map(|row| CellOp::DropRow { row }),
    ]
}

/// A CSV input: a seed table, its cell edits, then byte edits of the written text.
#[derive(Debug, Clone)]
pub struct CsvInput {
    pub seed: u16,
    pub cells: Vec<CellOp>,
    pub bytes: Vec<ByteOp>,
}

pub fn input() -> impl Strategy<Value = CsvInput> {
    (
        any::<u16>(),
        proptest::collection::vec(cell_op(), 1..6),
        proptest::collection::vec(support::byte_op_strategy(), 0..2),
    )
        .prop_map(|(seed, cells, bytes)| CsvInput { seed, cells, bytes })
}

/// The bytes of a CSV input; `seeds.texts` are CSV files.
pub fn materialise(seeds: &Seeds, input: &CsvInput) -> Vec<u8> {
    let text = &seeds.texts[input.seed as usize % seeds.texts.len()];
    let mut rows: Vec<Vec<String>> = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&text[..])
        .records()
        .filter_map(Result::ok)
        .map(|r| r.iter().map(str::to_owned).collect())
        .collect();
    if rows.is_empty() {
        rows.push(vec![String::new()]);
    }
    let word = |c: &Cell| match c {
        Cell::Word(i) => seeds.word(*i).to_string(),
        Cell::Token(i) => {
            String::from_utf8_lossy(support::TOKENS[*i as usize % support::TOKENS.len()])
                .into_owned()
        }
        Cell::Text(s) => s.clone(),
        Cell::Number(f) => f.to_string(),
    };
    for op in &input.cells {
        let n = rows.len();
        match op {
            CellOp::Set { row, col, to } => {
                let r = &mut rows[*row as usize % n];
                if !r.is_empty() {
                    let c = *col as usize % r.len();
                    r[c] = word(to);
                }
            }
            CellOp::Push { row, to } => rows[*row as usize % n].push(word(to)),
            CellOp::Pop { row } => {
                rows[*row as usize % n].pop();
            }
            CellOp::DropColumn { col } => {
                for r in rows.iter_mut().filter(|r| !r.is_empty()) {
                    let c = *col as usize % r.len();
                    r.remove(c);
                }
            }
            CellOp::DuplicateRow { row } => {
                let r = rows[*row as usize % n].clone();
                rows.insert(*row as usize % n, r);
            }
            CellOp::DropRow { row } if n > 1 => {
                rows.remove(*row as usize % n);
            }
            CellOp::DropRow { .. } => {}
        }
    }
    let mut w = csv::WriterBuilder::new()
        .flexible(true)
        .from_writer(Vec::new());
    for r in &rows {
        let _ = w.write_record(r);
    }
    let out = w.into_inner().unwrap_or_default();
    seeds.apply_bytes(out, &input.bytes)
}
