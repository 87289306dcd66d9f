//! The codes of a CSV upload (RFC 4180: quoted fields, `""` for a quote;
//! CRLF, LF or CR line ends; a UTF-8 byte order mark as Excel writes it),
//! each with its line: the column named `code` when the
//! first row is a header naming it, else the first column. Blank lines are
//! skipped; a row with an unclosed quote is refused with its line, never
//! read on to the end of the file.
//!
//! Its own module, apart from the route, so that the fuzz targets reach it
//! with the bytes of an upload and nothing else.

use voucherd_core::validation::Invalid;

use crate::problem::Problem;

/// One row's code, exactly as the CSV wrote it, and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub line: u64,
    pub code: String,
}

/// Reads every row's code, or the problem with the first row that cannot
/// be read.
pub fn parse(bytes: &[u8]) -> Result<Vec<Row>, Problem> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut column = 0;
    let mut first = true;
    loop {
        let start = reader.position().byte() as usize;
        let read = reader
            .read_byte_record(&mut record)
            .map_err(|error| Problem::malformed(format!("the CSV cannot be read: {error}")))?;
        if !read {
            break;
        }
        let line = record.position().map_or(0, csv::Position::line);
        let end = (reader.position().byte() as usize).min(bytes.len());
        let text = &bytes[start..end];
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
