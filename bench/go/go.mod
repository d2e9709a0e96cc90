module benchecho

go 1.21
