//! Domain logic shared by resolvers, the demo seeder and (later) the WeChat callback.
pub mod imports;
pub mod members;
pub mod sentiment;
pub mod values;
