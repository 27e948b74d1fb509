//! The bytes of trained model files, beside their registry rows: a head
//! trained by a worker on one machine is then loadable by processes on
//! others, which do not share its data folder.
#![allow(elided_lifetimes_in_paths)] // MigrationTrait is an async_trait with elided lifetimes
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum ModelFile {
    Table,
    ModelVersionId,
    Onnx,
    Meta,
    CreatedAt,
}

#[derive(DeriveIden, Clone, Copy)]
enum ModelVersion {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(ModelFile::Table)
                .if_not_exists()
                .col(
                    ColumnDef::new(ModelFile::ModelVersionId)
                        .uuid()
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(ModelFile::Onnx).blob().not_null())
                .col(ColumnDef::new(ModelFile::Meta).text().not_null())
                .col(
                    ColumnDef::new(ModelFile::CreatedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(ModelFile::Table, ModelFile::ModelVersionId)
                        .to(ModelVersion::Table, ModelVersion::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .take(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(ModelFile::Table).to_owned())
            .await
    }
}
