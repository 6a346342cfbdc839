//! Files a schema may import without a reference.
//!
//! Confluent's clients never send these as references (the Python serializer skips every
//! `confluent/`, `google/protobuf/` and `google/type/` import; the Java one its list of
//! known dependencies), so the registry has to know them. `google/protobuf/*.proto` come
//! with protox; the rest are here, written from their published definitions: only the
//! declarations that reach the wire (packages, messages, fields, enums) and no language
//! options. `tests/protobuf_parse.rs` checks each against the descriptor a real client
//! carries.

/// `(import path, source)`, looked up after the references, so a reference of the same
/// name wins.
pub(super) const FILES: &[(&str, &str)] = &[
    ("confluent/meta.proto", CONFLUENT_META),
    ("confluent/type/decimal.proto", CONFLUENT_DECIMAL),
    // The path Decimal had before it moved; it re-exports the current file.
    ("confluent/types/decimal.proto", CONFLUENT_DECIMAL_LEGACY),
    ("confluent/type/variant.proto", CONFLUENT_VARIANT),
    ("google/type/calendar_period.proto", GOOGLE_CALENDAR_PERIOD),
    ("google/type/color.proto", GOOGLE_COLOR),
    ("google/type/date.proto", GOOGLE_DATE),
    ("google/type/datetime.proto", GOOGLE_DATETIME),
    ("google/type/dayofweek.proto", GOOGLE_DAYOFWEEK),
    ("google/type/expr.proto", GOOGLE_EXPR),
    ("google/type/fraction.proto", GOOGLE_FRACTION),
    ("google/type/latlng.proto", GOOGLE_LATLNG),
    ("google/type/money.proto", GOOGLE_MONEY),
    ("google/type/month.proto", GOOGLE_MONTH),
    ("google/type/postal_address.proto", GOOGLE_POSTAL_ADDRESS),
    ("google/type/quaternion.proto", GOOGLE_QUATERNION),
    ("google/type/timeofday.proto", GOOGLE_TIMEOFDAY),
];

/// Confluent's annotations: doc strings, tags, params and data-quality rules on files,
/// messages, fields, enums and enum values, all as extension 1088 of the option messages.
const CONFLUENT_META: &str = r#"syntax = "proto3";
package confluent;
import "google/protobuf/descriptor.proto";
message Meta {
  string doc = 1;
  map<string, string> params = 2;
  repeated string tags = 3;
  repeated Rule rules = 4;
}
message Rule {
  string name = 1;
  string doc = 2;
  string expr = 3;
  string sql = 4;
}
extend google.protobuf.FileOptions { Meta file_meta = 1088; }
extend google.protobuf.MessageOptions { Meta message_meta = 1088; }
extend google.protobuf.FieldOptions { Meta field_meta = 1088; }
extend google.protobuf.EnumOptions { Meta enum_meta = 1088; }
extend google.protobuf.EnumValueOptions { Meta enum_value_meta = 1088; }
"#;

/// A decimal: the unscaled value as big-endian two's complement, its precision and scale.
const CONFLUENT_DECIMAL: &str = r#"syntax = "proto3";
package confluent.type;
message Decimal {
  bytes value = 1;
  uint32 precision = 2;
  int32 scale = 3;
}
"#;

const CONFLUENT_DECIMAL_LEGACY: &str = r#"syntax = "proto3";
import public "confluent/type/decimal.proto";
"#;

/// A semi-structured value in the Parquet variant encoding.
const CONFLUENT_VARIANT: &str = r#"syntax = "proto3";
package confluent.type;
message Variant {
  bytes metadata = 1;
  bytes value = 2;
}
"#;

const GOOGLE_CALENDAR_PERIOD: &str = r#"syntax = "proto3";
package google.type;
enum CalendarPeriod {
  CALENDAR_PERIOD_UNSPECIFIED = 0;
  DAY = 1;
  WEEK = 2;
  FORTNIGHT = 3;
  MONTH = 4;
  QUARTER = 5;
  HALF = 6;
  YEAR = 7;
}
"#;

const GOOGLE_COLOR: &str = r#"syntax = "proto3";
package google.type;
import "google/protobuf/wrappers.proto";
message Color {
  float red = 1;
  float green = 2;
  float blue = 3;
  google.protobuf.FloatValue alpha = 4;
}
"#;

const GOOGLE_DATE: &str = r#"syntax = "proto3";
package google.type;
message Date {
  int32 year = 1;
  int32 month = 2;
  int32 day = 3;
}
"#;

const GOOGLE_DATETIME: &str = r#"syntax = "proto3";
package google.type;
import "google/protobuf/duration.proto";
message DateTime {
  int32 year = 1;
  int32 month = 2;
  int32 day = 3;
  int32 hours = 4;
  int32 minutes = 5;
  int32 seconds = 6;
  int32 nanos = 7;
  oneof time_offset {
    google.protobuf.Duration utc_offset = 8;
    TimeZone time_zone = 9;
  }
}
message TimeZone {
  string id = 1;
  string version = 2;
}
"#;

const GOOGLE_DAYOFWEEK: &str = r#"syntax = "proto3";
package google.type;
enum DayOfWeek {
  DAY_OF_WEEK_UNSPECIFIED = 0;
  MONDAY = 1;
  TUESDAY = 2;
  WEDNESDAY = 3;
  THURSDAY = 4;
  FRIDAY = 5;
  SATURDAY = 6;
  SUNDAY = 7;
}
"#;

const GOOGLE_EXPR: &str = r#"syntax = "proto3";
package google.type;
message Expr {
  string expression = 1;
  string title = 2;
  string description = 3;
  string location = 4;
}
"#;

const GOOGLE_FRACTION: &str = r#"syntax = "proto3";
package google.type;
message Fraction {
  int64 numerator = 1;
  int64 denominator = 2;
}
"#;

const GOOGLE_LATLNG: &str = r#"syntax = "proto3";
package google.type;
message LatLng {
  double latitude = 1;
  double longitude = 2;
}
"#;

const GOOGLE_MONEY: &str = r#"syntax = "proto3";
package google.type;
message Money {
  string currency_code = 1;
  int64 units = 2;
  int32 nanos = 3;
}
"#;

const GOOGLE_MONTH: &str = r#"syntax = "proto3";
package google.type;
enum Month {
  MONTH_UNSPECIFIED = 0;
  JANUARY = 1;
  FEBRUARY = 2;
  MARCH = 3;
  APRIL = 4;
  MAY = 5;
  JUNE = 6;
  JULY = 7;
  AUGUST = 8;
  SEPTEMBER = 9;
  OCTOBER = 10;
  NOVEMBER = 11;
  DECEMBER = 12;
}
"#;

const GOOGLE_POSTAL_ADDRESS: &str = r#"syntax = "proto3";
package google.type;
message PostalAddress {
  int32 revision = 1;
  string region_code = 2;
  string language_code = 3;
  string postal_code = 4;
  string sorting_code = 5;
  string administrative_area = 6;
  string locality = 7;
  string sublocality = 8;
  repeated string address_lines = 9;
  repeated string recipients = 10;
  string organization = 11;
}
"#;

const GOOGLE_QUATERNION: &str = r#"syntax = "proto3";
package google.type;
message Quaternion {
  double x = 1;
  double y = 2;
  double z = 3;
  double w = 4;
}
"#;

const GOOGLE_TIMEOFDAY: &str = r#"syntax = "proto3";
package google.type;
message TimeOfDay {
  int32 hours = 1;
  int32 minutes = 2;
  int32 seconds = 3;
  int32 nanos = 4;
}
"#;
