//! The codes of a CSV upload (RFC 4180: quoted fields, `""` for a quote;
//! CRLF, LF or CR line ends; a UTF-8 byte order mark as Excel writes it),
//! each with the line its row starts on: the column named `code` when the
//! first row is a header naming it, else the first column. Blank lines are
//! skipped; a row with an unclosed quote is refused with its line, never
//! read on to the end of the file.
//!
//! Its own module, apart from the route, so that the fuzz targets reach it
//! with the bytes of an upload and nothing else.

use voucherd_core::validation::Invalid;

use crate::problem::Problem;

/// One row's code, exactly as the CSV wrote it, and the line (from 1) its
/// row starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub code: String,
}

/// Reads every row's code, or the problem with the first row that cannot
/// be read.
pub fn parse(bytes: &[u8]) -> Result<Vec<Row>, Problem> {
    // csv-core takes off one byte order mark at the start itself and
    // counts it in its positions, so it is not taken off here (a second
    // one would go with it); a row starts after it, never inside it.
    let mark_length = if bytes.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut lines = LineCounter::default();
    let mut column = 0;
    let mut first = true;
    loop {
        let start = (reader.position().byte() as usize).max(mark_length);
        let read = reader
            .read_byte_record(&mut record)
            .map_err(|error| Problem::malformed(format!("the CSV cannot be read: {error}")))?;
        if !read {
            break;
        }
        let end = (reader.position().byte() as usize).min(bytes.len());
        let text = &bytes[start..end];
        // What the reader consumed before the row may be blank lines and
        // the `\n` of the previous row's CRLF; the row starts after them.
        let skipped = text
            .iter()
            .take_while(|byte| matches!(byte, b'\r' | b'\n'))
            .count();
        let line = lines.line_at(bytes, start + skipped);
        // Quotes come in pairs in a well-formed row; an odd count is a
        // field whose quote never closed.
        let quotes = text.iter().filter(|byte| **byte == b'"').count();
        if quotes % 2 == 1 {
            return Err(
                Invalid::one(format!("line {line}"), "a quoted field is not closed").into(),
            );
        }
        let cells: Vec<&str> = record
            .iter()
            .map(std::str::from_utf8)
            .collect::<Result<_, _>>()
            .map_err(|_| Problem::malformed(format!("line {line} of the CSV is not UTF-8")))?;
        if std::mem::take(&mut first)
            && let Some(named) = cells
                .iter()
                .position(|cell| cell.eq_ignore_ascii_case("code"))
        {
            column = named;
            continue;
        }
        let Some(cell) = cells.get(column) else {
            return Err(Invalid::one(format!("line {line}"), "the row has no code column").into());
        };
        rows.push(Row {
            line,
            code: (*cell).to_owned(),
        });
    }
    Ok(rows)
}

/// Line numbers by our own count: the csv crate counts `\n` alone, so a
/// file with bare CR line ends would be all "line 1", and a row after a
/// CRLF would be named by the line before it. CRLF, LF and a bare CR each
/// end one line. The count moves forward only, so a large upload is read
/// once.
#[derive(Debug)]
struct LineCounter {
    counted_to: usize,
    line: u64,
}

impl Default for LineCounter {
    fn default() -> LineCounter {
        LineCounter {
            counted_to: 0,
            line: 1,
        }
    }
}

impl LineCounter {
    /// The line of the byte at `offset`, which is at or after the last
    /// offset asked about and never between the CR and LF of a CRLF.
    fn line_at(&mut self, bytes: &[u8], offset: usize) -> u64 {
        let counted = &bytes[self.counted_to..offset];
        let line_ends = counted
            .iter()
            .enumerate()
            .filter(|&(index, byte)| match byte {
                b'\n' => true,
                b'\r' => bytes.get(self.counted_to + index + 1) != Some(&b'\n'),
                _ => false,
            })
            .count();
        self.line += line_ends as u64;
        self.counted_to = offset;
        self.line
    }
}
