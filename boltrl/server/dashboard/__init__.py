"""The dashboard's static files (index.html, app.js, style.css), served inlined at `/`."""
