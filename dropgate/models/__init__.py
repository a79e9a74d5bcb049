"""The API's request and response structs, shared by the server and the client."""
