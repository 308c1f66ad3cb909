//! The CSV tables coppice writes (metrics, rounds, attempts, sensitivity, sweeps, comparisons)
//! and reads back (reports, comparisons), through the `csv` crate, so that a cell holding a
//! comma or a quote is quoted by the rules every spreadsheet and pandas read.

/// A header and rows of text cells; numbers are formatted by the caller, which knows their
/// precision.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Table {
        Table { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    pub fn push<S: Into<String>>(&mut self, row: impl IntoIterator<Item = S>) {
        self.rows.push(row.into_iter().map(Into::into).collect());
    }

    /// The table as CSV text, one record per line.
    pub fn to_csv(&self) -> String {
        let mut writer = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
        for record in std::iter::once(&self.header).chain(&self.rows) {
            writer.write_record(record).expect("writing to memory cannot fail");
        }
        String::from_utf8(writer.into_inner().expect("writing to memory cannot fail"))
            .expect("CSV of UTF-8 cells is UTF-8")
    }

    /// Parses CSV text whose first record is the header; rows may be shorter or longer than it.
    pub fn from_csv(text: &str) -> Result<Table, csv::Error> {
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(text.as_bytes());
        let header = reader.headers()?.iter().map(str::to_string).collect();
        let rows = reader
            .records()
            .map(|record| record.map(|r| r.iter().map(str::to_string).collect()))
            .collect::<Result<_, _>>()?;
        Ok(Table { header, rows })
    }

    /// The index of the column named `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    /// The cell of `row` in the column named `name`, as a number.
    pub fn number(&self, row: &[String], name: &str) -> Option<f64> {
        row.get(self.column(name)?)?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_with_commas_and_quotes_round_trip() {
        let mut table = Table::new(["name", "hidden", "accuracy"]);
        table.push(["a", "[300, 100]", "0.98"]);
        table.push(["say \"b\"", "", "0.5"]);
        let text = table.to_csv();
        assert_eq!(text.lines().nth(1), Some("a,\"[300, 100]\",0.98"));
        assert_eq!(Table::from_csv(&text).unwrap(), table);
        assert_eq!(table.number(&table.rows[0], "accuracy"), Some(0.98));
        assert_eq!(table.number(&table.rows[1], "hidden"), None);
    }
}
