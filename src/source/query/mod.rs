//! The `query` source: the rows of a SQL query on SQLite or Postgres, read
//! page by page in key order ([`conn`]), each row an item keyed by its key
//! column. Rows keep their values and types ([`types`]); [`work`] runs the
//! processors on a row's columns. With `--cursor` a run reads only the rows
//! beyond the last succeeded run's ([`cursor`]).

mod conn;
mod cursor;
mod types;
mod work;

use anyhow::{bail, Context, Result};
use tokio::runtime::Runtime;

pub(crate) use work::RowWork;

use super::{Again, Cursored, Found, Items, Source};
use crate::checkpoint::{Fingerprint, ItemKey, Part};
use crate::db::{self, Url};
use crate::pool::Cancel;
use crate::processor::registry::{self, Target};
use crate::record::{Column, Quoted, Value};
use conn::Conn;
use cursor::Range;

/// The `query` source as configured.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) from: String,
    pub(crate) sql: String,
    pub(crate) key: String,
    /// `--cursor`: the column whose values a run reads beyond the last one's.
    pub(crate) cursor: Option<String>,
    pub(crate) page_size: usize,
}

impl Spec {
    /// Connects and describes the query, and checks the processors against
    /// its columns (all usage errors); the source and the per-row work.
    pub(crate) fn open(
        self,
        processors: &[String],
        timeout: Option<std::time::Duration>,
    ) -> Result<(QuerySource, RowWork)> {
        let from = db::parse_database(&self.from, "--from")?;
        let specs = registry::parse(processors, Target::Rows)?;
        let rt = db::runtime()?;
        let shape = rt
            .block_on(async {
                let mut conn = Conn::open(&from).await?;
                conn.describe(&self.sql, &self.key, self.cursor.as_deref())
                    .await
            })
            .with_context(|| format!("query on {from}"))?;
        let work = RowWork::new(&shape, specs, timeout)?;
        Ok((
            QuerySource {
                from,
                sql: self.sql,
                key: self.key,
                page_size: self.page_size.max(1),
                shape,
                range: self.cursor.map(|column| Range {
                    column,
                    ..Range::default()
                }),
            },
            work,
        ))
    }
}

/// The query's columns, as checked before the run starts.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    pub(crate) columns: Vec<Column>,
    /// Index of the key column.
    pub(crate) key: usize,
}

/// One row of the query: its values, in column order.
pub(crate) type RowItem = Vec<Value>;

#[derive(Debug)]
pub(crate) struct QuerySource {
    from: Url,
    sql: String,
    key: String,
    page_size: usize,
    shape: Shape,
    /// With `--cursor`: the run's range, once [`Cursored::restrict`] set it.
    range: Option<Range>,
}

impl Source for QuerySource {
    type Item = RowItem;

    fn items(&self, after: Option<&ItemKey>) -> Result<Items<'_, RowItem>> {
        let rt = db::runtime()?;
        let conn = rt.block_on(Conn::open(&self.from))?;
        Ok(Box::new(Pages {
            source: self,
            rt,
            conn,
            after: after.cloned(),
            page: Vec::new().into_iter(),
            last: None,
            more: true,
        }))
    }

    fn again(&self, keys: Vec<ItemKey>, _after: Option<&ItemKey>) -> Result<Vec<Again<RowItem>>> {
        let rt = db::runtime()?;
        rt.block_on(async {
            let mut conn = Conn::open(&self.from).await?;
            let mut rows = Vec::with_capacity(keys.len());
            for key in keys {
                let item = conn
                    .row(&self.sql, &self.shape, self.range.as_ref(), &key)
                    .await?;
                rows.push(Again {
                    key,
                    item,
                    known: true,
                });
            }
            Ok(rows)
        })
    }

    /// `count(*)` of the query after `after`, on a connection of its own.
    /// It runs on a thread that is not waited for: a long count must not
    /// hold up the end of a run (or a Ctrl-C), and its result is then moot.
    fn count(&self, after: Option<&ItemKey>, stop: &Cancel, report: &dyn Fn(u64)) -> Result<()> {
        let (from, sql, key) = (self.from.clone(), self.sql.clone(), self.key.clone());
        let (range, after) = (self.range.clone(), after.cloned());
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            let counted = db::runtime().and_then(|rt| {
                rt.block_on(async {
                    let mut conn = Conn::open(&from).await?;
                    conn.count(&sql, &key, range.as_ref(), after.as_ref()).await
                })
            });
            let _ = tx.send(counted);
        });
        crossbeam_channel::select! {
            recv(rx) -> counted => {
                if let Ok(counted) = counted {
                    report(counted?);
                }
                Ok(())
            }
            recv(stop.done()) -> _ => Ok(()),
        }
    }

    fn item_size(row: &RowItem) -> u64 {
        row.iter().map(Value::size).sum()
    }

    fn label(&self, key: &ItemKey) -> String {
        format!("{}={key}", self.key)
    }

    fn fingerprint(&self, fp: &mut Fingerprint) {
        fp.add("from", Part::Text(self.from.to_string()))
            .add("sql", Part::Text(self.sql.clone()))
            .add("key", Part::Text(self.key.clone()));
        // Only with --cursor, so other query pipelines keep their fingerprint.
        if let Some(range) = &self.range {
            fp.add("cursor", Part::Text(range.column.clone()));
        }
    }

    fn cursored(&mut self) -> Option<&mut dyn Cursored> {
        match self.range {
            Some(_) => Some(self),
            None => None,
        }
    }
}

impl Cursored for QuerySource {
    fn bound(&self, after: Option<&str>) -> Result<String> {
        let range = self.range.as_ref().expect("an incremental query");
        let after = cursor::decode(after)?;
        let rt = db::runtime()?;
        let upto = rt
            .block_on(async {
                let mut conn = Conn::open(&self.from).await?;
                conn.bound(&self.sql, &range.column, after.as_ref()).await
            })
            .with_context(|| format!("--cursor {}", Quoted(&range.column)))?;
        // Nothing beyond the cursor: it stays where it is.
        Ok(cursor::encode(upto.as_ref().or(after.as_ref())))
    }

    fn restrict(&mut self, after: Option<&str>, upto: &str) -> Result<String> {
        let range = self.range.as_mut().expect("an incremental query");
        range.after = cursor::decode(after)?;
        range.upto = cursor::decode(Some(upto))?;
        Ok(range.describe())
    }
}

/// The rows, a page at a time.
struct Pages<'s> {
    source: &'s QuerySource,
    rt: Runtime,
    conn: Conn,
    /// The last key of the last page read.
    after: Option<ItemKey>,
    page: std::vec::IntoIter<(ItemKey, RowItem)>,
    /// The key of the row yielded last, to catch a key that is not unique.
    last: Option<ItemKey>,
    /// Whether the last page was full (there may be more).
    more: bool,
}

impl Pages<'_> {
    /// Reads the next page, one row longer than a page: the extra row shows
    /// a duplicate key straddling the page boundary (`>` would skip it).
    fn next_page(&mut self) -> Result<()> {
        let s = self.source;
        let rows = self.rt.block_on(self.conn.page(
            &s.sql,
            &s.shape,
            s.range.as_ref(),
            self.after.as_ref(),
            s.page_size + 1,
        ))?;
        let mut page = rows
            .into_iter()
            .map(|values| Ok((s.key_of(&values)?, values)))
            .collect::<Result<Vec<_>>>()?;
        self.more = page.len() > s.page_size;
        if self.more {
            let (extra, _) = page.pop().expect("page_size + 1 rows");
            if page.last().is_some_and(|(k, _)| *k == extra) {
                bail!(s.not_unique(&extra));
            }
        }
        if let Some((key, _)) = page.last() {
            self.after = Some(key.clone());
        }
        self.page = page.into_iter();
        Ok(())
    }
}

impl Iterator for Pages<'_> {
    type Item = Result<Found<RowItem>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (key, row) = match self.page.next() {
            Some(next) => next,
            None if !self.more => return None,
            None => {
                if let Err(e) = self.next_page() {
                    self.more = false;
                    return Some(Err(e));
                }
                self.page.next()?
            }
        };
        if self.last.as_ref() == Some(&key) {
            self.more = false;
            self.page = Vec::new().into_iter();
            return Some(Err(anyhow::anyhow!(self.source.not_unique(&key))));
        }
        self.last = Some(key.clone());
        Some(Ok(Found::Item(key, row)))
    }
}

impl QuerySource {
    fn key_of(&self, values: &[Value]) -> Result<ItemKey> {
        Ok(match &values[self.shape.key] {
            Value::Int(i) => ItemKey::Int(*i),
            Value::Text(s) => ItemKey::Text(s.clone()),
            _ => bail!(
                "--key {} has a value that is neither an integer nor a text",
                Quoted(&self.key)
            ),
        })
    }

    fn not_unique(&self, key: &ItemKey) -> String {
        format!(
            "--key {} is not unique: {key} appears more than once",
            Quoted(&self.key)
        )
    }
}
