//! The bytes of a CSV code upload, as `POST /v1/campaigns/{id}/codes` with
//! `text/csv` hands them to `codes_csv::parse`.
//!
//! Holds: reading never panics; each row is named by a line of the input
//! that is not blank, later rows by later lines, and in a file without
//! quotes by exactly its own line; and the codes read, written again by the
//! csv crate's own writer with any line end and read back, are the same
//! codes, so what is stored is what the file said.

#![no_main]

use csv::Terminator;
use libfuzzer_sys::fuzz_target;
use voucherd_http::codes_csv::{self, Row};

fuzz_target!(|bytes: &[u8]| {
    let Ok(rows) = codes_csv::parse(bytes) else {
        return;
    };
    check_lines(bytes, &rows);
    let codes: Vec<&str> = rows.iter().map(|row| row.code.as_str()).collect();
    // One way of writing per input, picked by its length: each reader costs
    // a table built afresh, and trying all six ways made a run several times
    // slower for no coverage that a mutation of the input does not reach.
    let terminator = [
        Terminator::CRLF,
        Terminator::Any(b'\n'),
        Terminator::Any(b'\r'),
    ][bytes.len() % 3];
    let with_note = bytes.len() % 2 == 1;
    let written = write(&codes, terminator, with_note);
    let read = codes_csv::parse(&written)
        .unwrap_or_else(|problem| panic!("{written:?} written by csv: {problem:?}"));
    let read: Vec<&str> = read.iter().map(|row| row.code.as_str()).collect();
    assert_eq!(read, codes, "written as {written:?}");
});

/// The lines of the input, ended by CRLF, LF or a bare CR.
fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\r' | b'\n' => {
                lines.push(&bytes[start..index]);
                let crlf = bytes[index] == b'\r' && bytes.get(index + 1) == Some(&b'\n');
                index += if crlf { 2 } else { 1 };
                start = index;
            }
            _ => index += 1,
        }
    }
    lines.push(&bytes[start..]);
    lines
}

fn check_lines(bytes: &[u8], rows: &[Row]) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let lines = lines(bytes);
    for pair in rows.windows(2) {
        assert!(
            pair[0].line < pair[1].line,
            "rows out of line order: {rows:?}"
        );
    }
    for row in rows {
        let line = usize::try_from(row.line).expect("a line number fits usize");
        assert!(
            (1..=lines.len()).contains(&line),
            "{row:?} past the {} lines",
            lines.len()
        );
        assert!(!lines[line - 1].is_empty(), "{row:?} names a blank line");
    }
    // Without quotes every line that is not blank is one row, so which
    // lines the rows are on is known without a CSV reader: all of them,
    // less the first when it is a header naming `code`.
    if !bytes.contains(&b'"') {
        let mut expected: Vec<u64> = (1..)
            .zip(&lines)
            .filter(|(_, line)| !line.is_empty())
            .map(|(number, _)| number)
            .collect();
        let header = lines
            .iter()
            .find(|line| !line.is_empty())
            .is_some_and(|line| {
                line.split(|byte| *byte == b',')
                    .any(|cell| cell.eq_ignore_ascii_case(b"code"))
            });
        if header {
            expected.remove(0);
        }
        let named: Vec<u64> = rows.iter().map(|row| row.line).collect();
        assert_eq!(named, expected, "the lines of {bytes:?}");
    }
}

/// The codes as a CSV file with a `code` header, alone or after a column
/// of notes, written with `terminator` by the csv crate.
fn write(codes: &[&str], terminator: Terminator, with_note: bool) -> Vec<u8> {
    let mut writer = csv::WriterBuilder::new()
        .terminator(terminator)
        .flexible(true)
        .from_writer(Vec::new());
    let header: &[&str] = if with_note {
        &["note", "code"]
    } else {
        &["code"]
    };
    writer.write_record(header).expect("writing to memory");
    for (index, code) in codes.iter().enumerate() {
        let note = format!("row {index}");
        let row: Vec<&str> = if with_note {
            vec![&note, code]
        } else {
            vec![code]
        };
        writer.write_record(&row).expect("writing to memory");
    }
    writer.into_inner().expect("writing to memory")
}
