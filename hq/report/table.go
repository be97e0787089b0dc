package report

// Table is one table of the HQ page: what the web page renders, and what
// a CSV or XLSX download holds, cell for cell.
type Table struct {
	// Name is stable and ASCII ("coverage", "not-visited", ...): it names
	// the download file and the table in URLs.
	Name string
	// Title is in the language asked for.
	Title   string
	Columns []Column
	Rows    [][]Cell
}

// Column is one column of a table.
type Column struct {
	Key     string // stable, ASCII
	Label   string // in the language asked for
	Numeric bool   // right-aligned; written as a number in XLSX
}

// Cell is one cell. Text is what is shown and downloaded (a number
// formatted as written, e.g. "87.5%"); Num its value when the column is
// numeric; Link, when not empty, the page (a path with its query, e.g.
// "/coverage?month=2026-11&unit=G0101") that lists the rows behind the
// number: every number opens its rows.
//
// Image, when not empty, is a picture the web page shows in the cell
// (a file's thumbnail or its type's icon), linked to Link; downloads keep
// Text only.
type Cell struct {
	Text  string
	Num   float64
	Link  string
	Image string
}
